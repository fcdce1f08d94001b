"""A run killed with SIGKILL mid-training resumes from its checkpoint and ends bit for bit where an
uninterrupted run ends (CPU, same seed)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

ARGS = ["debug=fast", "teachers=lexical", "logger=csv", "trainer.max_epochs=3", "student.save_weights=false"]


def w2s(runs: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "weaks2strong.cli", *ARGS, f"paths.runs_dir={runs}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def predictions(runs: Path, stage: str) -> pd.DataFrame:
    (folder,) = [p.parent for p in (runs / ".cache" / stage).glob("*/manifest.json")]
    return pd.read_parquet(folder / "predictions.parquet")


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight = w2s(tmp_path / "straight")
    assert straight.wait(timeout=600) == 0, straight.stdout.read()[-3000:]

    killed_runs = tmp_path / "killed"
    victim = w2s(killed_runs)
    deadline = time.time() + 600
    while not list(killed_runs.glob("sst2/*/checkpoints/ceiling/last.ckpt")):  # after epoch 1 of 3
        assert victim.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not list((killed_runs / ".cache" / "ceiling").glob("*/manifest.json"))  # nothing trusted

    resumed = w2s(killed_runs)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert "resuming from" in out
    for stage in ("ceiling", "student"):
        pd.testing.assert_frame_equal(predictions(killed_runs, stage), predictions(tmp_path / "straight", stage),
                                      check_exact=True)
