"""Tests of benchmarks/label_models.py: one real small set (youtube) with the cheap methods, its MV
accuracy recomputed here from the raw JSON, the headline line, and the one-line errors on bad folders.
No Snorkel or hyperlm needed (those rows are not requested)."""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("W2S_DATA_MIRROR", REPO.parent / "shared" / "datasets"))
YOUTUBE = DATA / "weak_supervision" / "youtube"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("label_models_bench", REPO / "benchmarks" / "label_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def ours_importable() -> bool:
    try:
        importlib.import_module("weaks2strong.aggregate.classification.bayes_label_model")
    except Exception:
        return False
    return True


def mv_accuracy_from_json(folder: Path) -> float:
    """Majority vote on test.json: a tie of m classes (an all-abstain row: all K) scores 1/m."""
    k = len(json.loads((folder / "label.json").read_text()))
    scores = []
    for row in json.loads((folder / "test.json").read_text()).values():
        counts = [0] * k
        for v in row["weak_labels"]:
            if v >= 0:
                counts[v] += 1
        top = [c for c in range(k) if counts[c] == max(counts)]
        scores.append(1.0 / len(top) if row["label"] in top else 0.0)
    return sum(scores) / len(scores)


def table_cell(markdown: str, section: str, method: str, column: str) -> str:
    lines = markdown.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("### ") and section in line)
    header = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    for line in lines[start + 4:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == method:
            return cells[header.index(column)]
    raise AssertionError(f"no row {method!r} in section {section!r}")


@pytest.mark.skipif(not YOUTUBE.is_dir(), reason="the youtube WRENCH set is not in the mirror")
def test_youtube_mv_wmv(bench, tmp_path, capsys):
    out = tmp_path / "results" / "label_models.md"
    methods = "mv,wmv" + (",ours" if ours_importable() else "")
    rc = bench.main(["--sets", "youtube", "--seeds", "0", "--methods", methods, "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert out.is_file()
    text = out.read_text()
    assert "--sets youtube --seeds 0" in text  # the header names the command
    assert table_cell(text, "Accuracy", "MV", "youtube") == f"{mv_accuracy_from_json(YOUTUBE):.4f}"
    assert table_cell(text, "Accuracy", "WMV", "youtube") != "—"
    assert text.strip() in captured.out  # the same markdown on stdout

    last = captured.out.strip().split("\n")[-1]
    pairs = dict(item.split("=", 1) for item in last.split())
    assert set(pairs) == {"mean_rank", "mean_acc", "rule_mean_acc", "crowd_mean_acc", "worst_vs_majority_se",
                          "slowest_fit_s", "anchored_min_gain"}
    for value in pairs.values():
        float(value)  # "nan" where ours did not run
    if "ours" in methods:
        assert 0.0 < float(pairs["rule_mean_acc"]) <= 1.0


def write_wrench(folder: Path, test_labels: list[int]) -> Path:
    folder.mkdir(parents=True)
    row = lambda votes, label: {"data": {"text": "t"}, "label": label, "weak_labels": votes}  # noqa: E731
    (folder / "label.json").write_text(json.dumps({"0": "a", "1": "b"}))
    (folder / "train.json").write_text(json.dumps({"0": row([0, 1], -1), "1": row([1, -1], -1)}))
    (folder / "valid.json").write_text(json.dumps({"2": row([0, 0], 0)}))
    (folder / "test.json").write_text(json.dumps({str(3 + i): row([1, 1], y) for i, y in enumerate(test_labels)}))
    return folder


def test_test_split_without_labels_is_one_line(bench, tmp_path, capsys):
    folder = write_wrench(tmp_path / "nolabels", [-1, -1])
    rc = bench.main(["--data", str(folder), "--sets", "nolabels", "--methods", "mv", "--out", str(tmp_path / "x.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert str(folder / "test.json") in err and "no labelled rows" in err
    assert not (tmp_path / "x.md").exists()


def test_bad_folders_are_one_line(bench, tmp_path, capsys):
    crowd = tmp_path / "crowdset"
    crowd.mkdir()
    (crowd / "answer.csv").write_text("question,worker,answer\n1,w1,0\n1,w2,1\n")
    rc = bench.main(["--data", str(crowd), "--sets", "crowdset", "--methods", "mv", "--out", str(tmp_path / "x.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(crowd / "truth.csv") in err

    ragged = write_wrench(tmp_path / "ragged", [0, 1])
    (ragged / "test.json").write_text(json.dumps({"9": {"label": 0, "weak_labels": [1]}}))
    rc = bench.main(["--data", str(ragged), "--sets", "ragged", "--methods", "mv", "--out", str(tmp_path / "x.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "test.json" in err and "id 9" in err

    outside = write_wrench(tmp_path / "outside", [0, 1])
    (outside / "train.json").write_text(json.dumps({"0": {"label": -1, "weak_labels": [0, 5]}}))
    rc = bench.main(["--data", str(outside), "--sets", "outside", "--methods", "mv", "--out", str(tmp_path / "x.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "train.json" in err and "vote 5" in err

    rc = bench.main(["--sets", "youtube", "--methods", "nonsense", "--out", str(tmp_path / "x.md")])
    assert rc == 2 and "nonsense" in capsys.readouterr().err
