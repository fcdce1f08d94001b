"""Tests of ``w2s-aggregate``'s WRENCH format and ``--gold`` anchoring (the csv basics are in
test_aggregate_bayes.py). Data are synthetic labelling functions with known truth, written here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from weaks2strong.aggregate.io.cli import main as cli_main
from weaks2strong.aggregate.io.crowd import probs_to_table

FAST = ["--quiet", "--steps", "100"]


def lf_votes(n, seed=0):
    """(N, 4) votes of keyword-like rules, -1 = abstain: each rule speaks for one class, mostly rightly."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, size=n)  # (N,)
    target = np.array([0, 0, 1, 1])  # (T,) the class each rule speaks for
    fire = np.where(z[:, None] == target[None], 0.6, 0.08)  # (N, T) fires mostly on its own class
    votes = np.where(rng.random((n, 4)) < fire, target[None], -1)
    return votes, z


def write_wrench(folder: Path, sizes=(("train", 160), ("valid", 40), ("test", 60))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.json").write_text(json.dumps({"0": "ham", "1": "spam"}))
    for s, (split, n) in enumerate(sizes):
        votes, z = lf_votes(n, seed=s)
        rows = {str(i): {"data": {"text": f"{split} {i}"}, "label": int(z[i]), "weak_labels": votes[i].tolist()}
                for i in range(n)}
        (folder / f"{split}.json").write_text(json.dumps(rows))
    return folder


def test_wrench_writes_every_split_and_prints_accuracies(tmp_path, capsys):
    data = write_wrench(tmp_path / "ws")
    out = tmp_path / "o" / "post.csv"
    assert cli_main(["--format", "wrench", str(data), "--out", str(out), *FAST]) == 0
    post = pd.read_csv(out, dtype={"id": str})
    assert list(post.columns) == ["split", "id", "label", "confidence", "difficulty", "p_ham", "p_spam"]
    assert post["split"].value_counts().to_dict() == {"train": 160, "test": 60, "valid": 40}
    assert set(post["label"]) <= {"ham", "spam"}
    np.testing.assert_allclose(post[["p_ham", "p_spam"]].sum(1), 1.0, atol=1e-4)
    printed = capsys.readouterr().out
    accs = dict(line.split(" ")[0].split("=") for line in printed.splitlines())
    assert set(accs) == {"accuracy_train", "accuracy_valid", "accuracy_test"}
    assert float(accs["accuracy_test"]) > 0.6  # the rules beat chance; the model should too
    assert sorted(p.name for p in out.parent.iterdir()) == ["post.csv"]


def test_wrench_gold_valid_anchors_the_fit(tmp_path, capsys):
    data = write_wrench(tmp_path / "ws")
    out = tmp_path / "post.csv"
    assert cli_main(["--format", "wrench", str(data), "--out", str(out), "--gold", "valid", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "accuracy_valid=" in printed and "anchored by --gold" in printed
    assert len(pd.read_csv(out)) == 260


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--gold", "test"], "--gold 'test': with --format wrench name the split"),
        (["--truth", "t.csv"], "--truth is for --format csv"),
    ],
)
def test_wrench_refuses_bad_options(tmp_path, capsys, extra, needle):
    data = write_wrench(tmp_path / "ws")
    out = tmp_path / "post.csv"
    assert cli_main(["--format", "wrench", str(data), "--out", str(out), *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and not out.exists()


def test_wrench_refuses_malformed_row(tmp_path, capsys):
    data = write_wrench(tmp_path / "ws")
    rows = json.loads((data / "valid.json").read_text())
    rows["7"]["weak_labels"] = [0, 1]
    (data / "valid.json").write_text(json.dumps(rows))
    out = tmp_path / "post.csv"
    assert cli_main(["--format", "wrench", str(data), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert str(data / "valid.json") in err and "id 7" in err and "expected 4" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_wrench_without_fit_splits(tmp_path, capsys):
    data = write_wrench(tmp_path / "ws", sizes=(("test", 20),))
    assert cli_main(["--format", "wrench", str(data), "--out", str(tmp_path / "p.csv"), *FAST]) == 2
    assert "no train.json or valid.json" in capsys.readouterr().err


def write_crowd(folder: Path, n=120):
    votes, z = lf_votes(n, seed=3)
    probs = np.eye(2)[votes.clip(0)]
    probs[votes < 0] = np.nan
    qs = [f"q{i}" for i in range(n)]
    table = probs_to_table(probs, qs, ["w1", "w2", "w3", "w4"], [0, 1], task="question", worker="worker",
                           label="answer")
    answers, truth = folder / "answer.csv", folder / "truth.csv"
    table.to_csv(answers, index=False)
    pd.DataFrame({"question": qs, "truth": z}).to_csv(truth, index=False)
    return answers, truth, table


def test_csv_gold_goes_through_the_dense_fit(tmp_path, capsys):
    answers, truth, table = write_crowd(tmp_path)
    gold = tmp_path / "gold.csv"
    pd.read_csv(truth).head(30).to_csv(gold, index=False)
    out = tmp_path / "post.csv"
    rc = cli_main([str(answers), "--out", str(out), "--truth", str(truth), "--gold", str(gold), *FAST])
    assert rc == 0
    post = pd.read_csv(out)
    assert list(post.columns) == ["question", "label", "confidence", "difficulty", "p_0", "p_1"]
    assert len(post) == table["question"].nunique()
    printed = capsys.readouterr().out
    assert "accuracy=" in printed and "accuracy_not_in_gold=" in printed


@pytest.mark.parametrize(
    "gold, needle",
    [
        ("question,truth\nq0,0\nq1,7\n", "row 3, column 'truth': class '7' is not among the answers' classes"),
        ("question,truth\nnope,0\n", "no question of the gold file is in the answers"),
        ("question,truth\nq0,0\nq0,1\n", "row 3, column 'question': question listed twice"),
        ("question\nq0\n", "missing column 'truth'"),
    ],
)
def test_csv_bad_gold_file(tmp_path, capsys, gold, needle):
    answers, _truth, _ = write_crowd(tmp_path)
    path = tmp_path / "gold.csv"
    path.write_text(gold)
    out = tmp_path / "post.csv"
    assert cli_main([str(answers), "--out", str(out), "--gold", str(path), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and str(path) in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("method", ["bayes_label_model", "majority", "weighted_majority", "dawid_skene"])
def test_any_label_model_of_the_family_from_the_cli(tmp_path, capsys, method):
    """A folder is read as WRENCH without --format; --method picks the model; gold only where it is supported."""
    data = write_wrench(tmp_path / "ws")
    out = tmp_path / f"{method}.csv"
    assert cli_main([str(data), "--method", method, "--out", str(out), "--quiet"]) == 0
    post = pd.read_csv(out, dtype={"id": str})
    np.testing.assert_allclose(post[["p_ham", "p_spam"]].sum(1), 1.0, atol=1e-4)
    accs = dict(line.split(" ")[0].split("=") for line in capsys.readouterr().out.splitlines())
    # crowd-kit's DS reads one-sided rules as always answering one class and collapses (WRENCH's
    # youtube: 0.53, docs/results/label_models.md); the others beat chance here
    accuracy = float(accs["accuracy_test"])
    assert accuracy <= 0.6 if method == "dawid_skene" else accuracy > 0.6
    code = cli_main([str(data), "--method", method, "--gold", "valid", "--out", str(tmp_path / "g.csv"), "--quiet"])
    if method in ("majority", "dawid_skene"):
        assert code == 2 and "cannot use gold labels" in capsys.readouterr().err
        assert not (tmp_path / "g.csv").exists()
    else:
        assert code == 0
