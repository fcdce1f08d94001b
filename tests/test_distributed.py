"""DDP on 2 CPU processes (gloo), launched by torchrun, against one process with the same global batch.

Each rank labels half of the rows (rank 0 gathers and writes) and trains on half of every batch;
the artifacts must match the single-process run's: 2 ranks x batch 8 == 1 process x batch 16,
dropout off so that the ranks' random streams do not matter.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

PROBE = ("+teachers.probe={_target_:weaks2strong.teachers.probe.EncoderProbe,model:minilm-l6,num_layers:2,"
         "models_dir:${paths.models_dir},progress:false}")
COMMON = ["debug=fast", "teachers=lexical", PROBE, "logger=none", "trainer.accelerator=cpu",
          "student.net.dropout=0", "+student.net.encoder_dropout=0"]


def w2s(launcher: list[str], tmp, name: str, *overrides: str, common: tuple[str, ...] = tuple(COMMON)) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*launcher, "-m", "weaks2strong.cli", *common, *overrides, f"paths.runs_dir={tmp}/{name}",
            f"hydra.run.dir={tmp}/{name}/run"]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp / name / "run" / "artifacts.json").read_text())


def probs(folder: str, table: str) -> pd.DataFrame:
    return pd.read_parquet(f"{folder}/{table}.parquet").set_index(["split", "example_id"]).sort_index()


def assert_matches_one_process(single: dict, ddp: dict) -> None:
    """The artifacts of a 2-rank run (each artifacts.json) against one process's, to the README's bounds."""
    for name in ("vader", "tfidf_lr", "probe"):  # sharded labelling, gathered on rank 0
        a, b = probs(single["teach"][name], "labels"), probs(ddp["teach"][name], "labels")
        assert a.index.equals(b.index)
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-6)  # the README: 1e-6
        assert json.loads(Path(ddp["teach"][name], "timing.json").read_text())["ranks"] == 2
    # the student's targets come from the aggregator fitted on those labels, which differ from the
    # single process's in the 7th digit; its fit moves them by up to 4e-5 (measured), so the student
    # is held to a looser bound than the ceiling, whose inputs (gold) are identical
    a, b = probs(single["aggregate"], "targets"), probs(ddp["aggregate"], "targets")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-4)
    for stage, atol in (("ceiling", 1e-6), ("student", 1e-5)):  # the README: 1e-6 (2e-7 measured), 1e-5
        a, b = probs(single[stage], "predictions"), probs(ddp[stage], "predictions")
        assert a.index.equals(b.index)
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=atol)
        assert json.loads(Path(ddp[stage], "timing.json").read_text())["world_size"] == 2


def test_ddp_on_two_gloo_ranks_matches_one_process(tmp_path):
    single = w2s([sys.executable], tmp_path, "single", "student.data.batch_size=16")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp = w2s(torchrun, tmp_path, "ddp", "trainer=ddp", "trainer.devices=2", "student.data.batch_size=8")

    assert_matches_one_process(single, ddp)
    run = tmp_path / "ddp" / "run"
    assert (run / "metrics.json").is_file() and (run / "rank1.log").is_file()  # one run dir; rank 1 only logs
    assert not (tmp_path / "ddp" / "sst2").exists()


def test_multirun_with_lightning_ddp_keeps_each_jobs_ranks_in_its_folder(tmp_path):
    """The Hydra + DDP pitfall: Lightning restarts ranks 1..N-1 from sys.argv; in a multirun that
    argv is the whole sweep. Each job's second rank must train with it and log into its folder."""
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "weaks2strong.cli", "-m", *COMMON, "trainer=ddp", "trainer.devices=2",
            "student.data.batch_size=8", "aggregator=bayes,majority", f"paths.runs_dir={tmp_path}/runs",
            f"hydra.sweep.dir={sweep}"]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file()
        assert (sweep / job / "train_ddp_process_1.log").is_file()  # rank 1 ran this job, in this folder
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [".cache"]  # no stray run dirs
    summary = (sweep / "sweep_summary.md").read_text()
    assert "| aggregator=bayes | 1 |" in summary and "| aggregator=majority | 1 |" in summary
