"""The tripwire for every stage: tasks whose test rows are sentinels run end to end through every
kind of stage the pipeline has, and a read of a test row before evaluate fails the test.

Three guards, on real runs (no stage is replaced; the models are the zoo's tiny ones):
1. the sealed task that the stages receive holds no test row (``Task.without_test``): a stage that
   asks it for one fails the run with the seal's message;
2. the task is watched (``tripwire.watched_task``): each read of its unsealed test split is logged,
   and every stage artifact the run used must be finished at the first one (evaluate's);
3. no file written before that first read holds a sentinel or a test example id; and evaluate did
   read the sentinels (its test numbers are over every sentinel row).
The classification run adds the teacher that trips on a sentinel it is shown (``TestSplitTripwire``).
"""
import gzip
import importlib.util
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import tripwire
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from test_generation import TINY_SCIQ_GEN
from test_pipeline import compose_run
from tripwire import SENTINEL, artifact_dirs, expected_pgr, leaks

from weaks2strong import pipeline
from weaks2strong.cli import CONFIG_DIR
from weaks2strong.runtime.resolvers import register_resolvers

# every classification aggregator (conf/aggregator/*.yaml without the gen_ ones); snorkel's needs the
# optional snorkel package
AGGREGATORS = ["bayes", "bayes_label_model", "bayes_unanchored", "crowdkit_ds", "majority", "mean", "single",
               "weighted_majority", *(["snorkel"] if importlib.util.find_spec("snorkel") else [])]
# the label model's choice of variant on the val gold (select=auto) refits it ~25 times, minutes on 2 busy
# cores; what the pipeline hands it (w2s_train and val rows, val's gold) is the same either way
SETTINGS = {"bayes_label_model": ["aggregator.model.select=none"]}


def watched(loader: str, out: Path) -> list[str]:
    """Overrides that build the task through ``tripwire.watched_task`` around its real loader."""
    return ["task._target_=tripwire.watched_task", f"+task.loader={loader}", f"+task.watch={out}"]


def sealed_run(cfg, out: Path, test_ids: set[str]) -> tuple[dict, dict]:
    """Run the pipeline; fail if a test row was read before every stage it used had finished, or if a
    file written before evaluate holds a sentinel or a test id. Returns (metrics, the first read)."""
    before = {p for p in out.rglob("*") if p.is_file()}
    tripwire.READS.clear()
    metrics = pipeline.run(cfg)
    assert tripwire.READS, "evaluate never read the test split"
    first = tripwire.READS[0]
    finished = {p.parent.resolve() for p in first["files"] if p.name == "manifest.json"}
    listed = json.loads((Path(cfg.paths.output_dir) / "artifacts.json").read_text())
    used = {p.resolve() for p in artifact_dirs(listed) if p.parent.name != "predict_test"}  # predict_test: evaluate's
    assert used and not used - finished, (f"the test split was read before {sorted(map(str, used - finished))} "
                                          f"finished; the first read:\n{first['caller']}")
    written = first["files"] - before
    found = leaks(written, test_ids)
    assert written and not found, "written before evaluate first read the test split:\n" + "\n".join(found)
    return metrics, first


def sentinel_csv(mirror: Path, path: Path, sizes: dict[str, int]) -> set[str]:
    """Real SST-2 rows with a split column; each test row's text starts with the sentinel."""
    rows = pd.read_csv(mirror / "sst2" / "train.tsv", sep="\t", quoting=3).iloc[:sum(sizes.values())].copy()
    rows["part"] = [split for split, n in sizes.items() for _ in range(n)]
    test = rows["part"] == "test"
    rows.loc[test, "sentence"] = SENTINEL + " " + rows.loc[test, "sentence"]
    rows.to_csv(path, index=False)
    return {f"test-{i}" for i in range(sizes["test"])}  # the csv loader's ids: <split>-<row in the split>


def sentinel_sciq(mirror: Path, folder: Path, train: int, test: int) -> set[str]:
    """A SciQ mirror: real train questions, and test questions and answers that start with the sentinel."""
    def blocks(name: str) -> list[list[str]]:
        text = (mirror / "sciq" / f"{name}.txt").read_text(encoding="utf-8").strip()
        return [b.split("\n") for b in text.split("\n\n")]

    (folder / "sciq").mkdir(parents=True)
    (folder / "sciq" / "train.txt").write_text("\n\n".join("\n".join(b) for b in blocks("train")[:train]) + "\n")
    (folder / "sciq" / "test.txt").write_text(
        "\n\n".join(f"{SENTINEL} {q}\n{SENTINEL} {a}" for q, a in blocks("test")[:test]) + "\n")
    return {f"test-{i}" for i in range(test)}


def test_the_leak_scan_reads_parquet_cells_json_strings_and_raw_bytes(tmp_path):
    """What the scan must find: a sentinel in a compressed parquet cell (any case) or in an answer's
    normalised form, a test id as a JSON value, a sentinel in a binary file; a clean file is not listed."""
    import torch
    from safetensors.torch import save_file

    pd.DataFrame({"example_id": ["val-0", "val-1"], "text": ["fine", f"a {SENTINEL.lower()} row"]}).to_parquet(
        tmp_path / "cells.parquet", compression="snappy")
    pd.DataFrame({"norm": ["sentineltestrow oxidants"]}).to_parquet(tmp_path / "normalised.parquet")
    (tmp_path / "ids.json").write_text(json.dumps({"sets": [[{"example_id": "test-3"}]]}))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "weights.safetensors"), metadata={"note": SENTINEL})
    pd.DataFrame({"example_id": ["val-0", "test-30x"], "text": ["fine", "fine"]}).to_parquet(tmp_path / "clean.parquet")
    (tmp_path / "clean.json").write_text(json.dumps({"example_id": "test-30", "note": "test-3 is a substring"}))
    found = leaks(set(tmp_path.iterdir()), {"test-3"})
    assert [line.split(":")[0].rsplit("/", 1)[1] for line in found] == [
        "cells.parquet", "ids.json", "normalised.parquet", "weights.safetensors"]


@pytest.mark.integration
def test_classification_teachers_of_every_kind_refine_every_aggregator_ceiling_and_student(tmp_path, mirror):
    """Teachers of each kind (lexicon, keywords, TF-IDF, the tripwire, a probe, a fine-tuned encoder,
    a prompted LM k-shot), in-context refinement, then every aggregator with the student."""
    sizes = {"weak_train": 60, "val": 30, "w2s_train": 50, "test": 20}
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    test_ids = sentinel_csv(mirror, data / "sentinel.csv", sizes)
    tiny = "${paths.models_dir}"
    base = [
        "task=csv", f"task.path={data / 'sentinel.csv'}", "task.text_column=sentence", "task.split_column=part",
        "task.classes=[negative,positive]", *(f"task.sizes.{s}={n}" for s, n in sizes.items()),
        *watched("weaks2strong.tasks.load_task", out),
        "teachers=lexical", "+teachers.tripwire._target_=tripwire.TestSplitTripwire",
        f"+teachers.tripwire.cache_dir={out}/runs/.cache",
        "+teachers.keywords._target_=weaks2strong.teachers.keywords.KeywordLexicon",
        "+teachers.keywords.keywords={negative:[not,no,bad,dull],positive:[and,good,great,fun]}",
        "+teachers.probe._target_=weaks2strong.teachers.probe.EncoderProbe", "+teachers.probe.model=tiny-bert",
        f"+teachers.probe.models_dir={tiny}", "+teachers.probe.progress=false",
        "+teachers.finetuned._target_=weaks2strong.teachers.finetuned.FineTunedEncoder",
        "+teachers.finetuned.model=tiny-bert", "+teachers.finetuned.epochs=1", f"+teachers.finetuned.models_dir={tiny}",
        "+teachers.finetuned.progress=false",
        "+teachers.prompted._target_=weaks2strong.teachers.prompted.PromptedLM", "+teachers.prompted.model=tiny-llama",
        "+teachers.prompted.use_chat_template=false", "+teachers.prompted.shots=2", "+teachers.prompted.calibrate=true",
        f"+teachers.prompted.models_dir={tiny}", "+teachers.prompted.progress=false",
        "refine=in_context", "refine.model.model=tiny-llama", "refine.model.shots=4", "refine.model.calibrate=none",
        "student.encoder=tiny-bert",
    ]
    teachers = {"vader", "tfidf_lr", "tripwire", "keywords", "probe", "finetuned", "prompted", "refined"}
    aggregates = set()
    for aggregator in AGGREGATORS:
        cfg = compose_run(out, aggregator, *base, f"aggregator={aggregator}", *SETTINGS.get(aggregator, []))
        metrics, _ = sealed_run(cfg, out, test_ids)
        assert set(metrics["teachers"]) == teachers, aggregator
        for name, entry in [*metrics["teachers"].items(), *((e, metrics[e]) for e in ("aggregate", "ceiling",
                                                                                          "student"))]:
            assert set(entry) == {"val", "w2s_train", "test"}, (aggregator, name)
            assert 0 <= entry["test"]["accuracy"] <= 1 and entry["test"]["coverage"] > 0, (aggregator, name)
        for against, value in expected_pgr(metrics, "test").items():
            assert metrics["pgr"]["test"][against] == pytest.approx(value, nan_ok=True), (aggregator, against)
        # evaluate read the sentinels: the student's test predictions are over every sentinel row
        student_test = pd.read_parquet(Path(metrics["predict_test"]["student"]) / "predictions.parquet")
        assert set(student_test["example_id"]) == test_ids
        aggregates.add(json.loads((out / aggregator / "artifacts.json").read_text())["aggregate"])
    assert len(aggregates) == len(AGGREGATORS)  # each aggregator fitted its own targets


@pytest.mark.integration
def test_verbalizer_student_and_its_dpo(tmp_path, mirror, models_dir):
    """The causal-LM verbalizer student (student=gemma3), then DPO'd on the aggregate's pairs after
    teacher forcing and alone from the pretrained LM (align=verbalizer_dpo, align.init)."""
    sizes = {"weak_train": 40, "val": 16, "w2s_train": 24, "test": 12}
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    test_ids = sentinel_csv(mirror, data / "sentinel.csv", sizes)
    base = ["task=csv", f"task.path={data / 'sentinel.csv'}", "task.text_column=sentence", "task.split_column=part",
            "task.classes=[negative,positive]", *(f"task.sizes.{s}={n}" for s, n in sizes.items()),
            *watched("weaks2strong.tasks.load_task", out), "teachers=lexical", "aggregator=majority",
            "student=gemma3", "student.encoder=tiny-llama", f"paths.models_dir={models_dir}", "align=verbalizer_dpo"]
    for init in ("distilled", "pretrained"):
        metrics, first = sealed_run(compose_run(out, init, *base, f"align.init={init}"), out, test_ids)
        stages = {p.parent.parent.name for p in first["files"] if p.name == "manifest.json"}
        assert {"teach", "aggregate", "ceiling", "student", "align"} <= stages, init
        for row in ("student", "aligned"):  # evaluate read the sentinels: both answered every test row
            tested = pd.read_parquet(Path(metrics["predict_test"]["student" if row == "student" else "align"])
                                     / "predictions.parquet")
            assert set(tested["example_id"]) == test_ids and 0 <= metrics[row]["test"]["accuracy"] <= 1, (init, row)


@pytest.mark.integration
def test_wrench_rules_as_teachers(tmp_path, mirror):
    """WRENCH's labelling functions: a task whose rows carry their rules' votes (``WrenchRule``), on
    a copy of youtube whose test texts start with the sentinel."""
    from weaks2strong.tasks import load_task

    out, data = tmp_path / "out", tmp_path / "data"
    source, folder = mirror / "weak_supervision" / "youtube", tmp_path / "data" / "weak_supervision" / "youtube"
    folder.mkdir(parents=True)
    for name in ("label.json", "train.json", "valid.json"):
        shutil.copy(source / name, folder / name)
    test = json.loads((source / "test.json").read_text())
    for row in test.values():
        row["data"]["text"] = f"{SENTINEL} {row['data']['text']}"
    (folder / "test.json").write_text(json.dumps(test))
    sizes = {"weak_train": 20, "val": 30, "w2s_train": 60, "test": 40}
    test_ids = set(load_task("youtube", sizes, mirror=str(data)).split("test")["example_id"])
    rules = (0, 5, 6, 9)  # the rules that fire on a fifth of the rows or more
    cfg = compose_run(out, "rules", "task=wrench", f"paths.data_mirror={data}",
                      *(f"task.sizes.{s}={n}" for s, n in sizes.items()), *watched("weaks2strong.tasks.load_task", out),
                      "teachers=lexical", *(f"+teachers.rule_{i}._target_=weaks2strong.teachers.rules.WrenchRule"
                                            for i in rules), *(f"+teachers.rule_{i}.index={i}" for i in rules),
                      "aggregator=majority", "student.encoder=tiny-bert")
    metrics, _ = sealed_run(cfg, out, test_ids)
    assert set(metrics["teachers"]) == {"vader", "tfidf_lr", *(f"rule_{i}" for i in rules)}
    student_test = pd.read_parquet(Path(metrics["predict_test"]["student"]) / "predictions.parquet")
    assert set(student_test["example_id"]) == test_ids


@pytest.mark.integration
def test_generation_teachers_aggregate_ceiling_student_and_dpo(tmp_path, mirror, models_dir):
    """The generation path (experiment=sciq_gen, align=dpo): prompted, fine-tuned and retrieval
    teachers propose and score, the candidate aggregator, the SFT ceiling and student, DPO."""
    out, data = tmp_path / "out", tmp_path / "data"
    test_ids = sentinel_sciq(mirror, data, train=60, test=6)
    overrides = [
        "experiment=sciq_gen", "debug=fast", "logger=none", f"paths.output_dir={out}/run", f"paths.runs_dir={out}/runs",
        f"paths.models_dir={models_dir}", f"paths.data_mirror={data}",
        *watched("weaks2strong.tasks.generation.load_generation_task", out),
        "task.sizes.weak_train=24", "task.sizes.w2s_train=12", "task.sizes.val=8", "task.sizes.test=6",
        *TINY_SCIQ_GEN,
    ]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics, first = sealed_run(cfg, out, test_ids)
    stages = {p.parent.parent.name for p in first["files"] if p.name == "manifest.json"}
    assert {"gen_propose", "gen_score", "gen_aggregate", "gen_ceiling", "gen_student"} <= stages
    assert {"student + DPO", "student + DPO (gold pairs)"} <= set(metrics["rows"])
    for name, row in metrics["rows"].items():
        # every test answer was scored against a sentinel gold answer that no stage before saw
        assert row["test"]["em"] == 0.0 and math.isfinite(row["test"]["f1"]), name


@pytest.mark.integration
def test_preference_judges_aggregators_and_dpo_students(tmp_path, mirror, models_dir):
    """The preference path (experiment=hh_harmless): DPO'd, prompted, Bradley-Terry and lexical
    judges, the aggregators, the reference log-probs and five DPO'd students."""
    from test_hh import SIZES, hh_config

    from weaks2strong.tasks.preference import load_preference_task

    out, data = tmp_path / "out", tmp_path / "data"
    test_ids = set(load_preference_task("hh_harmless", SIZES, mirror=str(mirror), split_seed=3)
                   .split("test")["example_id"])
    lines = gzip.open(mirror / "hh_harmless" / "test.jsonl.gz", "rt", encoding="utf-8").read().splitlines()
    for i in (int(e.removeprefix("hh-")) for e in test_ids):  # both final replies start with the sentinel
        record = json.loads(lines[i])
        for side in ("chosen", "rejected"):
            cut = record[side].rfind("\n\nAssistant:") + len("\n\nAssistant:")
            record[side] = f"{record[side][:cut]} {SENTINEL}{record[side][cut:]}"
        lines[i] = json.dumps(record)
    (data / "hh_harmless").mkdir(parents=True)
    with gzip.open(data / "hh_harmless" / "test.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    task = load_preference_task("hh_harmless", SIZES, mirror=str(data), split_seed=3)
    assert task.split("test")["text"].str.contains(SENTINEL).all()  # the same draw: only test rows are sentinels
    assert not any(task.split(s)["text"].str.contains(SENTINEL).any() for s in ("weak_train", "val", "w2s_train"))

    cfg = hh_config(out, models_dir, f"paths.data_mirror={data}",
                    *watched("weaks2strong.tasks.preference.load_preference_task", out))
    metrics, first = sealed_run(cfg, out, test_ids)
    stages = {p.parent.parent.name for p in first["files"] if p.name == "manifest.json"}
    assert {"teach", "aggregate", "pref_reference"} <= stages
    for name, row in metrics["rows"].items():
        acc = row["test"]["accuracy"]
        assert 0 <= acc <= 1 and (acc * SIZES["test"] * 2) % 1 == 0, name  # over the 12 sentinel pairs


@pytest.mark.integration
def test_search_guide_and_answers(tmp_path, mirror, models_dir):
    """Weak-to-strong search (experiment=sciq_search): the guide is tuned and every method answers
    val before the test split is read."""
    out, data = tmp_path / "out", tmp_path / "data"
    test_ids = sentinel_sciq(mirror, data, train=30, test=4)
    overrides = [
        "experiment=sciq_search", "logger=none", f"paths.output_dir={out}/run", f"paths.runs_dir={out}/runs",
        f"paths.models_dir={models_dir}", f"paths.data_mirror={data}",
        *watched("weaks2strong.tasks.generation.load_generation_task", out),
        "task.sizes.weak_train=16", "task.sizes.w2s_train=2", "task.sizes.val=3", "task.sizes.test=4",
        "search.strong=tiny-llama", "search.guide.model=tiny-llama", "search.guide.epochs=1",
        "search.max_new_tokens=4", "search.strong_shots=2", "+search.guide.progress=false",
    ]
    register_resolvers()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics, first = sealed_run(cfg, out, test_ids)
    answered = [p.parent for p in first["files"] if p.name == "manifest.json" and p.parent.parent.name ==
                "search_answers"]
    assert len(answered) == len(cfg.search.methods)  # every method had answered val, none test yet
    assert set(metrics["search"]["test"]) == set(cfg.search.methods)
    assert all(m["n"] == 4 for m in metrics["search"]["test"].values())
