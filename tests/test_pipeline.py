"""The real entry point on real SST-2 rows, with the real MiniLM student and the real teachers."""
import json
import logging
import math

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong import pipeline
from weaks2strong.cli import CONFIG_DIR

pytestmark = pytest.mark.integration


def compose_run(tmp_path, name, *overrides):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=[
            "debug=fast", "logger=csv", f"paths.runs_dir={tmp_path}/runs", f"paths.output_dir={tmp_path}/{name}",
            *overrides])
    HydraConfig.instance().set_config(cfg)
    return cfg


def stage_messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "weaks2strong.pipeline"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w2s")
    metrics = pipeline.run(compose_run(tmp, "run1"))
    return tmp, metrics


def test_debug_fast_end_to_end(first_run):
    tmp, metrics = first_run
    run = tmp / "run1"
    assert (run / "report.md").read_text().startswith("# weaks2strong run: sst2")
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["task"]["sizes"] == {"weak_train": 100, "w2s_train": 96, "test": 96}
    assert set(on_disk["teachers"]) == {"vader", "tfidf_lr", "smollm2"}
    for entry in [*on_disk["teachers"].values(), on_disk["aggregate"], on_disk["ceiling"], on_disk["student"]]:
        for key in ("accuracy", "auroc"):
            assert 0.0 <= entry["test"][key] <= 1.0
    assert math.isfinite(on_disk["misfit"]["kl"])
    best = on_disk["teachers"][on_disk["best_teacher"]]["test"]["accuracy"]
    # PGR is defined exactly when the ceiling beats the best teacher (96 rows, one epoch: either may happen)
    assert math.isfinite(on_disk["pgr"]["vs_best_teacher"]) == (on_disk["ceiling"]["test"]["accuracy"] > best)
    assert on_disk["ceiling"]["test"]["accuracy"] > 0.5  # real MiniLM on 96 gold rows, one epoch
    artifacts = json.loads((run / "artifacts.json").read_text())
    assert (tmp / "runs" / ".cache" / "student").is_dir()
    for stage in ("aggregate", "ceiling", "student"):
        assert json.loads((tmp.joinpath(artifacts[stage], "manifest.json")).read_text())["stage"] == stage
    assert (tmp / artifacts["student"] / "model.safetensors").stat().st_size > 1e6
    assert (run / "checkpoints" / "student" / "last.ckpt").is_file()
    assert (run / "csv").is_dir()  # the CSV logger wrote its metrics
    vader = pd.read_parquet(tmp / artifacts["teach"]["vader"] / "labels.parquet")
    abstained = vader[["p_0", "p_1"]].isna().all(axis=1)
    assert 0 < abstained.sum() < len(vader)  # an abstention stays a missing entry, not a 0.5 guess


def test_identical_rerun_reuses_every_stage(first_run, caplog):
    tmp, metrics = first_run
    caplog.set_level(logging.INFO, logger="weaks2strong.pipeline")
    again = pipeline.run(compose_run(tmp, "run2"))
    messages = stage_messages(caplog)
    assert sum("reused" in m for m in messages) == 3 + 3  # three teachers, aggregate, ceiling, student
    assert again["student"]["test"] == metrics["student"]["test"]


def test_changing_the_aggregator_reuses_teachers_and_ceiling(first_run, caplog):
    tmp, _ = first_run
    caplog.set_level(logging.INFO, logger="weaks2strong.pipeline")
    pipeline.run(compose_run(tmp, "run3", "aggregator=majority"))
    messages = stage_messages(caplog)
    assert sum(m.startswith("teach:") and "reused" in m for m in messages) == 3
    assert any(m.startswith("ceiling: reused") for m in messages)
    assert any(m.startswith("student: trained") for m in messages)
    assert not any(m.startswith("aggregate: reused") for m in messages)
