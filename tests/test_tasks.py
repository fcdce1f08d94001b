import pandas as pd
import pytest

from weaks2strong.tasks import TaskError, load_task

SIZES = {"weak_train": 50, "val": 20, "w2s_train": 60, "test": 30}


def test_sst2_splits_are_disjoint_sized_and_deterministic(mirror):
    a = load_task("sst2", sizes=SIZES, mirror=str(mirror), split_seed=3)
    b = load_task("sst2", sizes=SIZES, mirror=str(mirror), split_seed=3)
    c = load_task("sst2", sizes=SIZES, mirror=str(mirror), split_seed=4)
    assert {s: len(df) for s, df in a.splits.items()} == SIZES
    weak, w2s = set(a.splits["weak_train"]["example_id"]), set(a.splits["w2s_train"]["example_id"])
    val = set(a.splits["val"]["example_id"])
    assert len(val) == 20 and not (val & weak) and not (val & w2s)
    assert not weak & w2s
    assert all(i.startswith("dev-") for i in a.splits["test"]["example_id"])
    assert a.splits["w2s_train"].equals(b.splits["w2s_train"])
    assert not a.splits["w2s_train"].equals(c.splits["w2s_train"])
    assert set(a.labels("weak_train")) == {0, 1}


def test_prompts_fill_the_template(mirror):
    task = load_task("sst2", sizes=SIZES, mirror=str(mirror), prompt="R: {text} ->")
    assert task.prompts("test")[0] == f"R: {task.splits['test']['text'][0]} ->"


@pytest.mark.parametrize("name", ["imdb_small", "amazon_small"])
def test_review_subsets_load(mirror, name):
    task = load_task(name, sizes={"weak_train": 100, "w2s_train": 100, "test": 50, "val": 10}, mirror=str(mirror))
    assert len(task.texts("test")) == 50 and min(map(len, task.texts("test"))) > 0


def test_unknown_task_is_one_clear_line(mirror):
    with pytest.raises(TaskError, match="unknown task 'sst3'.*sst2"):
        load_task("sst3", sizes=SIZES, mirror=str(mirror))


def test_missing_mirror_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(TaskError, match=r"dataset file not found: .*nowhere/sst2/train.tsv.*paths.data_mirror"):
        load_task("sst2", sizes=SIZES, mirror=str(tmp_path / "nowhere"))


def test_split_larger_than_data_names_the_key(mirror):
    with pytest.raises(TaskError, match=r"task.sizes.test=5000 is more than the 872 rows"):
        load_task("sst2", sizes={"weak_train": 10, "w2s_train": 10, "test": 5000, "val": 10}, mirror=str(mirror))


def test_user_csv_without_split_column(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"review": [f"text {i}" for i in range(40)], "stars": ["good", "bad"] * 20}).to_csv(path, index=False)
    task = load_task("csv", path=str(path), text_column="review", label_column="stars", classes=["bad", "good"],
                     sizes={"weak_train": 10, "w2s_train": 10, "test": 10, "val": 10})
    ids = [set(task.splits[s]["example_id"]) for s in ("weak_train", "val", "w2s_train", "test")]
    assert sum(map(len, ids)) == len(set.union(*ids)) == 40  # four disjoint splits
    assert set(task.labels("test")) <= {0, 1}


def test_user_jsonl_with_split_column(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"t": f"x{i}", "y": i % 2, "part": s} for s in ("weak_train", "val", "w2s_train", "test") for i in range(4)]
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    task = load_task("csv", path=str(path), text_column="t", label_column="y", split_column="part",
                     classes=["no", "yes"], sizes={"weak_train": 4, "val": 4, "w2s_train": 4, "test": 4})
    assert sorted(task.splits["test"]["text"]) == [f"x{i}" for i in range(4)]  # only the rows marked test


def test_bad_label_row_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["good", "meh", "bad"]}).to_csv(path, index=False)
    with pytest.raises(TaskError, match=r"bad.csv: row 2 has label 'meh'"):
        load_task("csv", path=str(path), classes=["bad", "good"], 
                  sizes={"weak_train": 1, "w2s_train": 1, "test": 1, "val": 1})


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"body": ["a"], "label": [0]}).to_csv(path, index=False)
    with pytest.raises(TaskError, match=r"no column 'text'"):
        load_task("csv", path=str(path), classes=["a", "b"], 
                  sizes={"weak_train": 1, "w2s_train": 1, "test": 1, "val": 1})


def test_reading_tasks_carry_a_text_pair(mirror):
    boolq = load_task("boolq", sizes={"weak_train": 20, "w2s_train": 20, "test": 20, "val": 10}, mirror=str(mirror),
                      classes=["no", "yes"], prompt="{text_pair}\nQ: {text}?")
    assert set(boolq.labels("test")) <= {0, 1} and "text_pair" in boolq.splits["test"]
    assert boolq.prompts("test")[0].startswith(boolq.splits["test"]["text_pair"][0])
    cosmos = load_task("cosmosqa", sizes={"weak_train": 20, "w2s_train": 20, "test": 40, "val": 10}, mirror=str(mirror),
                       classes=["A", "B", "C", "D"])
    assert cosmos.num_classes == 4 and set(cosmos.labels("test")) <= {0, 1, 2, 3}
    assert all(f"\n{letter}) " in cosmos.splits["test"]["text_pair"][0] for letter in "ABCD")
    # the three splits come from the one dev file, disjointly
    ids = [set(cosmos.splits[s]["example_id"]) for s in ("weak_train", "w2s_train", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_yaml_booleans_as_class_names_are_refused(mirror):
    # `classes: [no, yes]` in YAML reads as [False, True]
    with pytest.raises(TaskError, match=r"task.classes\[0\] is False \(bool\), not a string; quote it in YAML"):
        load_task("boolq", sizes={"weak_train": 5, "w2s_train": 5, "test": 5, "val": 5}, mirror=str(mirror),
                  classes=[False, True])


@pytest.mark.parametrize("name", ["sst2", "imdb_small", "amazon_small", "boolq", "cosmosqa"])
def test_shipped_task_configs_load_with_string_classes_and_verbalizers(mirror, name):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from weaks2strong.cli import CONFIG_DIR

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"task={name}", f"paths.data_mirror={mirror}"])
    task = instantiate(cfg.task, _convert_="all")
    assert all(isinstance(v, str) for v in task.classes + task.verbalizers)
    assert len(task.verbalizers) == task.num_classes and len(task.prompts("test")) == cfg.task.sizes.test


def test_a_prompt_asking_for_a_field_the_rows_lack_is_refused(mirror):
    with pytest.raises(TaskError, match=r"task.prompt uses \{text_pair\}, but the rows of .*sst2 have no 'text_pair' "
                                        r"\(fields: text\)"):
        load_task("sst2", sizes={"weak_train": 5, "w2s_train": 5, "test": 5, "val": 5}, mirror=str(mirror),
                  prompt="{text_pair}\nQ: {text}?")


def test_a_sealed_test_split_cannot_be_read_and_does_not_enter_the_keys(mirror):
    from weaks2strong.pipeline.common.tables import task_key

    task = load_task("sst2", sizes=SIZES, mirror=str(mirror))
    dev = task.without_test()
    for read in (lambda: dev.texts("test"), lambda: dev.labels("test"), lambda: dev.prompts("test"),
                 lambda: dev.encoder_inputs("test"), lambda: dev.split("test")):
        with pytest.raises(TaskError, match="the test split is sealed until the evaluate stage"):
            read()
    assert dev.texts("val") == task.texts("val")
    # the stages' keys come from the sealed task: they cannot depend on the test rows
    other_test = load_task("sst2", sizes={**SIZES, "test": 31}, mirror=str(mirror)).without_test()
    assert task_key(dev) == task_key(other_test) != task_key(task)


def _reachable_ids(value) -> set:
    """Every example_id that an object's attributes reach (frames, dicts, lists, nested records)."""
    if isinstance(value, pd.DataFrame):
        return set(value["example_id"]) if "example_id" in value else set()
    if isinstance(value, dict):
        return set().union(*map(_reachable_ids, value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*map(_reachable_ids, value))
    if hasattr(value, "__dict__"):
        return _reachable_ids(vars(value))
    return set()


@pytest.mark.parametrize("kind, name", [
    ("classification", "sst2"), ("classification", "wrench:sms"), ("multiple choice", "cosmosqa"),
    ("classification", "csv"), ("generation", "sciq_gen"), ("generation", "imdb_continue"),
    ("preference", "hh_harmless"),
])
def test_the_sealed_task_of_every_kind_holds_no_test_row(kind, name, mirror, tmp_path):
    """``without_test`` drops the test rows (it is not a flag on a copy that still has them): no
    attribute of the sealed task reaches a test example, the other splits are untouched, asking for
    test names the seal, and the unsealed task keeps its test rows for evaluate."""
    from weaks2strong.tasks.generation import load_generation_task
    from weaks2strong.tasks.preference import load_preference_task

    sizes = {"weak_train": 12, "val": 6, "w2s_train": 8, "test": 7}
    if kind == "generation":
        task = load_generation_task(name, sizes, mirror=str(mirror))
    elif kind == "preference":
        task = load_preference_task(name, sizes, mirror=str(mirror))
    elif name == "csv":
        path = tmp_path / "rows.csv"
        pd.DataFrame({"text": [f"row {i}" for i in range(40)], "label": ["negative", "positive"] * 20}).to_csv(path)
        task = load_task("csv", sizes, classes=["negative", "positive"], path=str(path))
    else:
        task = load_task(name.removeprefix("wrench:"), sizes, mirror=str(mirror))
    test_ids = set(task.split("test")["example_id"])
    dev = task.without_test()
    assert len(test_ids) == 7 and type(dev) is type(task) and dev.sealed and not task.sealed
    assert "test" not in dev.splits and not _reachable_ids(dev) & test_ids
    assert all(dev.split(s) is task.split(s) for s in ("weak_train", "val", "w2s_train"))
    with pytest.raises(TaskError, match="the test split is sealed until the evaluate stage"):
        dev.split("test")
    assert dev.without_test().splits == dev.splits and set(task.split("test")["example_id"]) == test_ids


def test_sizes_without_val_are_refused_by_key(mirror):
    with pytest.raises(TaskError, match=r"task.sizes.val is missing"):
        load_task("sst2", sizes={"weak_train": 5, "w2s_train": 5, "test": 5}, mirror=str(mirror))
