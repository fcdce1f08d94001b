"""A cached file changed on disk is never reused: a real run's parquet, JSON and safetensors files,
each with one flipped bit, are found on the rerun (one warning naming the file), their stage alone is
computed again; ``w2s-cache verify`` lists a bad artifact and ``w2s-cache gc`` removes only what no
run dir references."""
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong import pipeline
from weaks2strong.cli import CONFIG_DIR
from weaks2strong.runtime.artifacts import USED, Store, check
from weaks2strong.runtime.cache_cli import main as w2s_cache

pytestmark = pytest.mark.integration


def run(tmp: Path, name: str) -> dict:
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=[
            "debug=fast", "logger=csv", "teachers=lexical", "student.encoder=tiny-bert",
            f"paths.runs_dir={tmp}/runs", f"paths.output_dir={tmp}/{name}"])
    HydraConfig.instance().set_config(cfg)
    return pipeline.run(cfg)


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrity")
    run(tmp, "run1")
    return tmp, json.loads((tmp / "run1" / "artifacts.json").read_text())


@pytest.mark.parametrize("stage, file", [("teach", "labels.parquet"), ("aggregate", "teachers.json"),
                                         ("student", "model.safetensors")])
def test_a_flipped_byte_recomputes_its_stage_and_reuses_the_others(first_run, caplog, stage, file):
    tmp, artifacts = first_run
    folder = Path(artifacts[stage]["vader"] if stage == "teach" else artifacts[stage])
    others = [Path(p) for p in (*artifacts["teach"].values(), artifacts["aggregate"], artifacts["ceiling"],
                                artifacts["student"]) if Path(p) != folder]
    created = json.loads((folder / "manifest.json").read_text())["created"]
    flip(folder / file)
    with caplog.at_level(logging.INFO):
        run(tmp, f"rerun_{stage}")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and r.name.startswith("weaks2strong")]
    assert len(warnings) == 1 and str(folder / file) in warnings[0], warnings
    reused = " ".join(r.getMessage() for r in caplog.records if "reused (" in r.getMessage())
    assert str(folder) not in reused and all(str(p) in reused for p in others), reused
    assert check(folder, folder.name)[0] == "ok"  # computed again, in place of the bad folder
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["created"] >= created and file in manifest["files"]


def test_verify_lists_the_bad_artifact_and_exits_nonzero(first_run, capsys):
    tmp, artifacts = first_run
    cache = tmp / "runs" / ".cache"
    assert w2s_cache(["verify", "--cache", str(cache)]) == 0
    flip(Path(artifacts["ceiling"]) / "predictions.parquet")
    assert w2s_cache(["verify", "--cache", str(cache)]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bad ")]
    assert bad == [f"bad ceiling/{Path(artifacts['ceiling']).name}: {artifacts['ceiling']}/predictions.parquet "
                   f"does not match its checksum in manifest.json"]
    shown = subprocess.run([sys.executable, "-m", "weaks2strong.runtime.cache_cli", "verify", "--cache", str(cache)],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 1 and shown.stdout.count("bad ") == 1, shown.stdout + shown.stderr
    flip(Path(artifacts["ceiling"]) / "predictions.parquet")  # flipped back: sound again
    assert w2s_cache(["verify", "--cache", str(cache)]) == 0


def test_gc_lists_then_deletes_only_what_no_run_dir_references(first_run, capsys):
    tmp, artifacts = first_run
    cache = tmp / "runs" / ".cache"
    used = set(json.loads((tmp / "run1" / USED).read_text())["artifacts"])
    listed = [*artifacts["teach"].values(), artifacts["aggregate"], artifacts["ceiling"], artifacts["student"]]
    assert {f"{Path(p).parent.name}/{Path(p).name}" for p in listed} <= used == names(cache)
    for key in ("orphan", "locked"):  # written by a script without a run dir: no run references them
        with Store(cache).create("aggregate", key, {}, {}) as scratch:
            (scratch / "targets.json").write_text("{}")
    before = names(cache)
    with Store(cache).claim("aggregate", "locked"):  # a process is computing or reusing it
        assert w2s_cache(["gc", "--cache", str(cache)]) == 0  # a dry run
        assert names(cache) == before
        out = capsys.readouterr().out
        assert "would remove aggregate/orphan" in out and "in use aggregate/locked: kept" in out
        assert out.count("would remove") == 1
        assert w2s_cache(["gc", "--cache", str(cache), "--delete"]) == 0
    assert names(cache) == before - {"aggregate/orphan"}
    assert capsys.readouterr().out.count("removed aggregate/") == 1
    # a run that stopped after one teacher: only that artifact stays once every other run dir is deleted
    vader = Path(artifacts["teach"]["vader"])
    assert Store(cache, run_dir=tmp / "stopped").find("teach", vader.name) is not None
    for run_dir in [tmp / "run1", *tmp.glob("rerun_*")]:
        shutil.rmtree(run_dir)
    assert w2s_cache(["gc", "--cache", str(cache), "--delete"]) == 0
    assert names(cache) == {f"teach/{vader.name}"}
    (entry,) = (cache / ".runs").glob("*.json")  # the deleted run dirs are forgotten
    assert json.loads(entry.read_text())["run_dir"] == str((tmp / "stopped").resolve())
    assert list((cache / "examples").glob("*/*.parquet"))  # the per-example cache is never collected


def names(cache: Path) -> set[str]:
    return {f"{p.parent.parent.name}/{p.parent.name}" for p in cache.glob("*/*/manifest.json")}
