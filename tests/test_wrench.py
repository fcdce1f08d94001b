"""Tests of the WRENCH loader (weaks2strong.aggregate.io.wrench): tiny JSON files written here, and one
integration test on the mirrored YouTube spam set (skipped when it is not there)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from weaks2strong.aggregate.base import AggregatorError, check_probs
from weaks2strong.aggregate.io.wrench import accuracy, load_wrench

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("W2S_DATA_MIRROR", REPO.parent / "shared" / "datasets"))
YOUTUBE = DATA / "weak_supervision" / "youtube"


def row(votes, label=0, text="t"):
    return {"data": {"text": text}, "label": label, "weak_labels": votes}


def write(folder: Path, name: str, obj) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.fixture
def tiny(tmp_path):
    """A three-class set: 3 rules, label.json present."""
    write(tmp_path, "label.json", {"0": "neg", "1": "neu", "2": "pos"})
    write(tmp_path, "train.json", {"a": row([0, -1, 2], 0, "first"), "b": row([-1, -1, -1], 2), "c": row([1, 1, 1], 1)})
    write(tmp_path, "valid.json", {"d": row([2, 2, -1], 2)})
    write(tmp_path, "test.json", {"e": row([0, 0, 0], 0), "f": row([-1, 1, -1], 1)})
    return tmp_path


def test_one_split_becomes_one_hot_rows_with_nan_abstentions(tiny):
    d = load_wrench(tiny, "train")
    assert d.probs.shape == (3, 3, 3) and d.probs.dtype == np.float64
    np.testing.assert_array_equal(d.probs[0, 0], [1, 0, 0])
    assert np.isnan(d.probs[0, 1]).all() and np.isnan(d.probs[1]).all()
    np.testing.assert_array_equal(d.probs[0, 2], [0, 0, 1])
    np.testing.assert_array_equal(d.labels, [0, 2, 1])
    np.testing.assert_array_equal(d.votes, [[0, -1, 2], [-1, -1, -1], [1, 1, 1]])
    assert d.ids == ["a", "b", "c"] and d.texts[0] == "first"
    assert d.class_names == ["neg", "neu", "pos"]
    assert list(d.split) == ["train"] * 3 and d.teacher_names == ["rule_0", "rule_1", "rule_2"]
    check_probs(d.probs)  # the aggregators' contract holds


def test_folder_loads_all_splits_in_order_and_a_file_loads_itself(tiny):
    d = load_wrench(tiny)
    assert list(d.split) == ["train"] * 3 + ["valid"] + ["test"] * 2
    assert d.ids == list("abcdef")
    np.testing.assert_array_equal(d.rows("train", "valid"), [1, 1, 1, 1, 0, 0])
    two = load_wrench(tiny, ["valid", "test"])
    assert two.ids == ["d", "e", "f"]
    one = load_wrench(tiny / "test.json")
    assert one.ids == ["e", "f"] and list(one.split) == ["test", "test"] and one.class_names[2] == "pos"


def test_classes_inferred_without_label_json(tmp_path):
    write(tmp_path, "train.json", {"x": row([0, 3], 1), "y": row([-1, -1], 0)})
    d = load_wrench(tmp_path, "train")
    assert d.class_names == ["0", "1", "2", "3"] and d.probs.shape == (2, 2, 4)
    write(tmp_path / "b", "train.json", {"x": row([0, -1], 0)})
    assert load_wrench(tmp_path / "b").class_names == ["0", "1"]  # never fewer than two


def test_missing_label_is_unlabelled(tmp_path):
    write(tmp_path, "train.json", {"x": {"data": {"text": "a"}, "weak_labels": [1, 0]}, "y": row([0, 0], None)})
    np.testing.assert_array_equal(load_wrench(tmp_path).labels, [-1, -1])


@pytest.mark.parametrize(
    "rows, needle",
    [
        ({"r1": row([0, 1]), "r2": {"data": {}, "label": 0}}, "id r2: no weak_labels"),
        ({"r1": row([0, 1]), "r2": row([0, 1, 1])}, "id r2: weak_labels has 3 votes, expected 2"),
        ({"r1": row([0, 2])}, "id r1: weak_labels has vote 2 outside [-1, 1]"),
        ({"r1": row([0, -2])}, "id r1: weak_labels has vote -2 outside [-1, 1]"),
        ({"r1": row([0, "1"])}, "id r1: weak_labels must be a list of ints"),
        ({"r1": row([0, True])}, "id r1: weak_labels must be a list of ints"),
        ({"r1": row([0, 1], label=5)}, "id r1: label 5 outside [0, 1]"),
        ({"r1": row([0, 1], label="spam")}, "id r1: label must be an int"),
        ({"r1": [0, 1]}, "id r1: row is a list"),
        ({"r1": row([])}, "id r1: weak_labels is empty"),
        ({}, "no rows"),
        ([1, 2], "expected a JSON object"),
        ('{"r1": ', "not valid JSON"),
    ],
)
def test_malformed_rows_raise_one_line_naming_file_and_id(tmp_path, rows, needle):
    write(tmp_path, "label.json", {"0": "ham", "1": "spam"})
    path = write(tmp_path, "train.json", rows)
    with pytest.raises(AggregatorError) as err:
        load_wrench(tmp_path, "train")
    msg = str(err.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_rule_counts_must_agree_across_splits(tiny):
    write(tiny, "test.json", {"e": row([0, 0], 0)})
    with pytest.raises(AggregatorError, match=r"test.json: id e: weak_labels has 2 votes, expected 3"):
        load_wrench(tiny)


@pytest.mark.parametrize(
    "labels, needle",
    [({"0": "a", "2": "b"}, "class indices must be 0..1"), ({"x": "a", "y": "b"}, "must be integers"),
     ({"0": "a"}, "at least two classes"), ([], "non-empty JSON object")],
)
def test_bad_label_json(tiny, labels, needle):
    write(tiny, "label.json", labels)
    with pytest.raises(AggregatorError, match=needle):
        load_wrench(tiny, "train")


def test_missing_paths(tmp_path):
    with pytest.raises(AggregatorError, match="no such WRENCH folder or file"):
        load_wrench(tmp_path / "nope")
    with pytest.raises(AggregatorError, match="no WRENCH split file"):
        load_wrench(tmp_path)
    with pytest.raises(AggregatorError, match=r"valid.json: no such file"):
        load_wrench(tmp_path, "valid")


def test_accuracy_counts_ties_as_a_share_and_skips_unlabelled():
    post = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.3, 0.7]])
    assert accuracy(post, np.array([0, 1, 0, -1])) == pytest.approx((1 + 0.5 + 0) / 3)


@pytest.mark.integration
@pytest.mark.skipif(not YOUTUBE.is_dir(), reason="WRENCH youtube set not mirrored")
def test_real_youtube_set():
    d = load_wrench(YOUTUBE)
    counts = {s: int(d.rows(s).sum()) for s in ("train", "valid", "test")}
    assert counts == {"train": 1586, "valid": 120, "test": 250}
    assert d.probs.shape == (1956, 10, 2) and d.class_names == ["HAM", "SPAM"]
    assert set(np.unique(d.labels)) == {0, 1}
    check_probs(d.probs[d.rows("train", "valid")], d.teacher_names)


def test_a_wrench_set_is_a_task_whose_rules_are_teachers(mirror):
    """WRENCH's end-model protocol: the text for the student, each rule's votes as a teacher."""
    import json

    from weaks2strong.aggregate.io.wrench import load_wrench
    from weaks2strong.tasks import load_task
    from weaks2strong.teachers.base import TeacherError
    from weaks2strong.teachers.rules import WrenchRule

    task = load_task("youtube", sizes={"weak_train": 20, "val": 50, "w2s_train": 200, "test": 250}, mirror=str(mirror))
    assert task.classes == ["HAM", "SPAM"]  # from label.json
    raw = load_wrench(mirror / "weak_supervision" / "youtube", split="test")
    assert sorted(task.split("test")["text"]) == sorted(map(str, raw.texts))  # the whole test file
    votes = np.array([json.loads(v) for v in task.split("val")["weak_labels"]])  # (N, 10)
    rule = WrenchRule(2)
    rule.fit(task)
    probs = rule.predict_proba(task, "val")
    fired = votes[:, 2] >= 0
    assert np.isnan(probs[~fired]).all()
    np.testing.assert_array_equal(probs[fired].argmax(1), votes[fired, 2])
    with pytest.raises(TeacherError, match="has 10 rules"):
        WrenchRule(10).fit(task)
    sst2 = load_task("sst2", sizes={"weak_train": 20, "val": 20, "w2s_train": 20, "test": 20}, mirror=str(mirror))
    with pytest.raises(TeacherError, match="no 'weak_labels' column"):
        WrenchRule(0).fit(sst2)


def test_rows_no_teacher_answered_can_weigh_nothing(mirror):
    """aggregator.uncovered_weight=0: the student trains on covered rows only (WRENCH's end models)."""
    from weaks2strong.aggregate.classification import MajorityVote
    from weaks2strong.pipeline.classification.aggregate import targets_frame
    from weaks2strong.runtime.schema import problem
    from weaks2strong.tasks import load_task

    task = load_task("sms", sizes={"weak_train": 20, "val": 40, "w2s_train": 300, "test": 500}, mirror=str(mirror))
    votes = np.array([json.loads(v) for v in task.split("w2s_train")["weak_labels"]])  # (N, T)
    votes = votes[:, (votes >= 0).any(0)]  # rules silent on every row of this draw sit out, as in the ledger
    probs = np.full(votes.shape + (2,), np.nan)
    i, j = np.nonzero(votes >= 0)
    probs[i, j] = np.eye(2)[votes[i, j]]
    model = MajorityVote().fit(probs)
    kept, _ = targets_frame(task, "w2s_train", model, probs, "confidence")
    dropped, _ = targets_frame(task, "w2s_train", model, probs, "confidence", uncovered_weight=0.0)
    uncovered = (votes < 0).all(1)
    assert 0 < uncovered.sum() < len(votes)  # sms: most rows get no vote
    assert (dropped["weight"][uncovered] == 0).all()
    np.testing.assert_array_equal(dropped["weight"][~uncovered], kept["weight"][~uncovered])
    message = "config key 'aggregator.uncovered_weight' must be in [0, 1], got 2"
    assert problem({"aggregator": {"uncovered_weight": 2}}) == message


@pytest.mark.integration
@pytest.mark.skipif(not YOUTUBE.is_dir(), reason="WRENCH youtube set not mirrored")
def test_snorkel_adapter_matches_snorkel_on_the_real_youtube_set():
    """The adapter hands Snorkel the same label matrix WRENCH does: its posterior equals Snorkel's own
    on the test rows, and it labels youtube's test set as in WRENCH (Snorkel 0.10, 5 seeds: 0.8720
    mean in docs/results/label_models.md; here one seed)."""
    from snorkel.labeling.model import LabelModel

    from weaks2strong.aggregate.classification import SnorkelLabelModel

    d = load_wrench(YOUTUBE)
    fit_rows, test_rows = d.rows("train"), d.rows("test")
    ours = SnorkelLabelModel(seed=0).fit(d.probs[fit_rows]).predict_proba(d.probs[test_rows])
    theirs = LabelModel(cardinality=2, verbose=False)
    theirs.fit(d.votes[fit_rows], n_epochs=500, seed=0, progress_bar=False)
    assert np.allclose(ours, theirs.predict_proba(d.votes[test_rows]), atol=1e-6)
    assert accuracy(ours, d.labels[test_rows]) > 0.8
