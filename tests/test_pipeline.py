"""The real entry point on real SST-2 rows, with the real MiniLM student and the real teachers."""
import json
import logging
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong import pipeline
from weaks2strong.cli import CONFIG_DIR
from weaks2strong.pipeline.common import stage as stages

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
    assert on_disk["task"]["sizes"] == {"weak_train": 100, "val": 48, "w2s_train": 96, "test": 96}
    assert set(on_disk["teachers"]) == {"vader", "tfidf_lr", "smollm2"}
    assert on_disk == json.loads(json.dumps(metrics))  # what pipeline.run returned is what it wrote
    assert on_disk["ceiling"]["test"]["accuracy"] > 0.5  # real MiniLM on 96 gold rows, one epoch
    assert on_disk["seeds"] == {"splits": 0, "teachers": 0, "aggregator": 0, "student": 0}
    artifacts = json.loads((run / "artifacts.json").read_text())
    # the student this run trained went with the run: a sweep's process holds one run's models, not all
    assert stages.recall("student", Path(artifacts["student"]).name) is None
    assert (tmp / "runs" / ".cache" / "student").is_dir()
    for stage in ("aggregate", "ceiling", "student"):
        assert json.loads((tmp.joinpath(artifacts[stage], "manifest.json")).read_text())["stage"] == stage
    assert (tmp / artifacts["student"] / "model.safetensors").stat().st_size > 1e6
    assert not (run / "checkpoints").exists()  # a finished stage is reused, never resumed
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
    assert not any("predict_test" in m for m in messages)  # every model's test predictions were reused too
    assert again["student"]["test"] == metrics["student"]["test"]


def test_changing_the_aggregator_reuses_teachers_and_ceiling(first_run, caplog):
    tmp, _ = first_run
    caplog.set_level(logging.INFO, logger="weaks2strong.pipeline")
    pipeline.run(compose_run(tmp, "run3", "aggregator=majority", "student.keep_checkpoint=true"))
    messages = stage_messages(caplog)
    assert sum(m.startswith("teach:") and "reused" in m for m in messages) == 3
    assert any(m.startswith("ceiling: reused") for m in messages)
    assert any(m.startswith("student: trained") for m in messages)
    assert not any(m.startswith("aggregate: reused") for m in messages)
    assert (tmp / "run3" / "checkpoints" / "student" / "last.ckpt").is_file()  # kept, as asked
    assert not (tmp / "run3" / "checkpoints" / "ceiling").exists()  # reused: nothing trained, nothing kept


def test_pgr_and_accuracies_recomputed_from_the_artifacts_equal_the_report(first_run):
    """Every number in metrics.json follows from the stage artifacts and gold: the best teacher is the
    one with the best val accuracy, and PGR on val and test is recomputed from the predictions."""
    import numpy as np

    from weaks2strong.tasks import load_task

    tmp, metrics = first_run
    artifacts = json.loads((tmp / "run1" / "artifacts.json").read_text())
    cfg = compose_run(tmp, "recompute")
    task = load_task(**{k: v for k, v in cfg.task.items() if k != "_target_"})
    cols = ["p_0", "p_1"]

    def accuracy(frame, split):
        frame = frame[frame["split"] == split].set_index("example_id").loc[task.split(split)["example_id"]]
        probs = frame[cols].to_numpy()
        answered = ~np.isnan(probs).any(1)
        hits = np.where(answered, np.nan_to_num(probs).argmax(1) == task.labels(split), 0.5)
        return float(hits.mean())

    def test_rows(source):
        return pd.read_parquet(tmp / artifacts["predict_test"][source] / "predictions.parquet")

    tables = {f"teacher:{n}": pd.concat([pd.read_parquet(tmp / p / "labels.parquet"), test_rows(f"teacher:{n}")])
              for n, p in artifacts["teach"].items()}
    for entry in ("ceiling", "student"):
        tables[entry] = pd.concat([pd.read_parquet(tmp / artifacts[entry] / "predictions.parquet"), test_rows(entry)])
    acc = {(name, split): accuracy(frame, split) for name, frame in tables.items() for split in ("val", "test")}
    best = max(artifacts["teach"], key=lambda n: acc[(f"teacher:{n}", "val")])
    assert metrics["best_teacher"] == best
    for split in ("val", "test"):
        for name in artifacts["teach"]:
            assert metrics["teachers"][name][split]["accuracy"] == pytest.approx(acc[(f"teacher:{name}", split)])
        weak, student, ceiling = acc[(f"teacher:{best}", split)], acc[("student", split)], acc[("ceiling", split)]
        expected = (student - weak) / (ceiling - weak) if ceiling > weak else math.nan
        assert metrics["pgr"][split]["vs_best_teacher"] == pytest.approx(expected, nan_ok=True)


def test_the_test_split_is_unreachable_before_evaluate(tmp_path, mirror):
    """A task whose test rows are sentinels, and a teacher that trips if it sees one before the student
    exists: the run completes, and the tripwire first saw the test rows in evaluate."""
    sys_path = str(Path(__file__).parent)
    if sys_path not in sys.path:
        sys.path.insert(0, sys_path)
    from tripwire import SENTINEL, expected_pgr

    rows = pd.read_csv(mirror / "sst2" / "train.tsv", sep="\t", quoting=3).iloc[:260]
    parts = ["weak_train"] * 100 + ["val"] * 40 + ["w2s_train"] * 80 + ["test"] * 40
    rows["part"] = parts
    rows.loc[rows["part"] == "test", "sentence"] = SENTINEL + " " + rows.loc[rows["part"] == "test", "sentence"]
    path = tmp_path / "sentinel.csv"
    rows.to_csv(path, index=False)
    cfg = compose_run(tmp_path, "sealed", "task=csv", f"task.path={path}", "task.text_column=sentence",
                      "task.split_column=part", "task.classes=[negative,positive]", "task.sizes.weak_train=100",
                      "task.sizes.val=40", "task.sizes.w2s_train=80", "task.sizes.test=40", "teachers=lexical",
                      "+teachers.tripwire._target_=tripwire.TestSplitTripwire",
                      f"+teachers.tripwire.cache_dir={tmp_path}/runs/.cache", "student.encoder=tiny-bert",
                      "aggregator=majority")
    metrics = pipeline.run(cfg)
    on_disk = json.loads((tmp_path / "sealed" / "metrics.json").read_text())
    for entry in [*on_disk["teachers"].values(), on_disk["aggregate"], on_disk["ceiling"], on_disk["student"]]:
        assert set(entry) == {"val", "w2s_train", "test"} and entry["test"]["coverage"] > 0
    assert set(on_disk["teachers"]) == {"vader", "tfidf_lr", "tripwire"}
    # PGR on test from the run's own test accuracies (NaN where the ceiling does not clear the weak one)
    for against, value in expected_pgr(metrics, "test").items():
        assert metrics["pgr"]["test"][against] == pytest.approx(value, nan_ok=True), against
    assert set(metrics["pgr"]["test"]) == {"vs_best_teacher", "vs_aggregate"}


def test_teacher_error_correlation_and_interval_coverage_follow_from_the_artifacts(first_run):
    """The val error correlation is recomputed from the teachers' label artifacts and gold, pair by pair
    with numpy; each teacher's ``covered`` from the aggregate's teachers.json and its true accuracy."""
    import numpy as np

    from weaks2strong.tasks import load_task

    tmp, metrics = first_run
    artifacts = json.loads((tmp / "run1" / "artifacts.json").read_text())
    cfg = compose_run(tmp, "recompute_errors")
    task = load_task(**{k: v for k, v in cfg.task.items() if k != "_target_"})
    gold, ids = task.labels("val"), task.split("val")["example_id"]
    errors, answered = {}, {}
    for name, path in artifacts["teach"].items():
        frame = pd.read_parquet(tmp / path / "labels.parquet")
        probs = frame[frame["split"] == "val"].set_index("example_id").loc[ids][["p_0", "p_1"]].to_numpy()
        answered[name] = ~np.isnan(probs).any(1)
        top = np.isclose(probs, np.nanmax(probs, 1, keepdims=True, initial=-1), rtol=0, atol=1e-12)
        errors[name] = 1 - top[np.arange(len(gold)), gold] / np.maximum(top.sum(1), 1)  # a tie: half an error

    table = metrics["teacher_error_correlation"]
    assert table["split"] == "val" and table["teachers"] == list(artifacts["teach"])
    for i, a in enumerate(table["teachers"]):
        for j, b in enumerate(table["teachers"]):
            both = answered[a] & answered[b]
            assert table["n_shared"][i][j] == both.sum()
            ea, eb = errors[a][both], errors[b][both]
            defined = both.sum() >= 2 and ea.std() > 0 and eb.std() > 0
            expected = np.corrcoef(ea, eb)[0, 1] if defined else None
            assert table["matrix"][i][j] == (None if expected is None else pytest.approx(expected))
    assert (tmp / "run1" / "plots" / "teacher_error_correlation_val.png").stat().st_size > 5_000
    assert "## Teacher error correlation (val)" in (tmp / "run1" / "report.md").read_text()

    estimates = json.loads((tmp / artifacts["aggregate"] / "teachers.json").read_text())
    # anchored on 48 val rows (below the 50 that the gold correction needs): Laplace intervals alone
    assert {e["interval_method"] for e in estimates.values()} == {"laplace"}
    covered = []
    for name, a in metrics["teacher_analysis"].items():
        true = metrics["teachers"][name]["w2s_train"]["accuracy_where_answered"]
        low, high = estimates.get(name, {}).get("accuracy_low"), estimates.get(name, {}).get("accuracy_high")
        assert a["covered"] == (None if low is None else low <= true <= high)
        covered += [] if a["covered"] is None else [a["covered"]]
    summary = metrics["teacher_estimates_summary"]
    assert summary["n"] == len(covered)
    assert summary["coverage"] == (pytest.approx(np.mean(covered)) if covered else None)
