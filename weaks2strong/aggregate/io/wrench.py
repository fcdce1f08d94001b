"""Programmatic weak supervision in the WRENCH format: labelling-function votes as an (N, T, K) array.

WRENCH (Zhang et al. 2021, "WRENCH: A Comprehensive Benchmark for Weak Supervision") keeps a data
set as a folder of ``train.json``, ``valid.json``, ``test.json`` and ``label.json``. A split file is
``{id: {"data": {"text": ...}, "label": int, "weak_labels": [T ints, -1 = abstain]}}``; label.json
maps the class index to its name. Each labelling function (rule) becomes a teacher with a one-hot
row where it voted and a whole NaN row where it abstained, the aggregators' convention (aggregate/base.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base import AggregatorError

SPLITS = ("train", "valid", "test")


@dataclass
class WrenchData:
    """Rows of one or more WRENCH splits, in file order (train, valid, test when several)."""

    probs: np.ndarray  # (N, T, K) one-hot votes, NaN rows where a rule abstained
    labels: np.ndarray  # (N,) int gold class, -1 where the file gives none
    ids: list[str]  # (N,) the ids as written in the file (unique only within a split)
    texts: list  # (N,) data["text"], None where the row has no text
    split: np.ndarray  # (N,) str: the split each row came from
    class_names: list[str]  # (K,)

    @property
    def votes(self) -> np.ndarray:
        """(N, T) int votes with -1 for an abstention, as Snorkel's label matrix L."""
        return np.where(np.isnan(self.probs).all(-1), -1, np.nan_to_num(self.probs, nan=0.0).argmax(-1))

    @property
    def teacher_names(self) -> list[str]:
        # WRENCH does not name its rules; their order in weak_labels is all there is
        return [f"rule_{j}" for j in range(self.probs.shape[1])]

    def rows(self, *splits: str) -> np.ndarray:
        """Boolean mask (N,) of the rows from the named splits."""
        return np.isin(self.split, splits)


def load_wrench(folder_or_file, split=None) -> WrenchData:
    """Read a WRENCH split file, or a folder's splits (``split``: a name, a list of names, or None = all).

    K comes from label.json beside the split files when present, else from the largest class seen in
    the labels and votes of everything loaded (at least two). Every row must have ``weak_labels`` of
    the same length, with ints in [-1, K-1]; a bad row raises AggregatorError naming file and id.
    """
    path = Path(folder_or_file)
    if path.is_dir():
        folder = path
        if split is None:
            names = [s for s in SPLITS if (folder / f"{s}.json").is_file()]
            if not names:
                raise AggregatorError(f"{folder}: no WRENCH split file ({', '.join(f'{s}.json' for s in SPLITS)})")
        else:
            names = [split] if isinstance(split, str) else list(split)
        files = [folder / f"{s}.json" for s in names]
    elif path.is_file():
        if split is not None:
            raise AggregatorError(f"{path}: split={split!r} is for a folder; this is already one split file")
        folder, names, files = path.parent, [path.stem], [path]
    else:
        raise AggregatorError(f"{path}: no such WRENCH folder or file")

    class_names = _read_label_names(folder / "label.json")
    raw = [(f, s, _read_split(f)) for f, s in zip(files, names)]
    # rows: (file, id, votes, label, text)
    rows = [(f, i, *_parse_row(f, i, r)) for f, _s, d in raw for i, r in d.items()]
    split_of = [s for _f, s, d in raw for _ in d]
    t = len(rows[0][2])
    for f, i, votes, _label, _text in rows:
        if len(votes) != t:
            raise AggregatorError(f"{f}: id {i}: weak_labels has {len(votes)} votes, expected {t} "
                                  f"(as in {rows[0][0].name} id {rows[0][1]})")
    if t == 0:
        raise AggregatorError(f"{rows[0][0]}: id {rows[0][1]}: weak_labels is empty (no rules)")

    if class_names is None:
        top = max(max([label for *_, label, _text in rows]), max(max(r[2]) for r in rows))
        class_names = [str(c) for c in range(max(top + 1, 2))]
    k = len(class_names)
    for f, i, votes, label, _text in rows:
        bad = [v for v in votes if not -1 <= v < k]
        if bad:
            raise AggregatorError(f"{f}: id {i}: weak_labels has vote {bad[0]} outside [-1, {k - 1}]")
        if not -1 <= label < k:
            raise AggregatorError(f"{f}: id {i}: label {label} outside [0, {k - 1}]")

    votes = np.array([r[2] for r in rows], dtype=np.int64)  # (N, T)
    probs = np.eye(k)[votes.clip(0)]  # (N, T, K)
    probs[votes < 0] = np.nan
    return WrenchData(
        probs=probs,
        labels=np.array([r[3] for r in rows], dtype=np.int64),
        ids=[r[1] for r in rows],
        texts=[r[4] for r in rows],
        split=np.array(split_of, dtype=object),
        class_names=class_names,
    )


def _read_json(path: Path):
    if not path.is_file():
        raise AggregatorError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AggregatorError(f"{path}: not valid JSON: {str(exc).splitlines()[0]}") from None


def _read_split(path: Path) -> dict:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise AggregatorError(f"{path}: expected a JSON object {{id: row}}, got a {type(data).__name__}")
    if not data:
        raise AggregatorError(f"{path}: no rows (empty object)")
    return data


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true would otherwise pass as class 1


def _parse_row(path: Path, i: str, row) -> tuple[list[int], int, object]:
    if not isinstance(row, dict):
        raise AggregatorError(f"{path}: id {i}: row is a {type(row).__name__}, expected an object")
    if "weak_labels" not in row:
        raise AggregatorError(f"{path}: id {i}: no weak_labels")
    votes = row["weak_labels"]
    if not isinstance(votes, list) or not all(_is_int(v) for v in votes):
        raise AggregatorError(f"{path}: id {i}: weak_labels must be a list of ints (-1 = abstain), got {votes!r:.60}")
    label = row.get("label")
    if label is None:
        label = -1  # an unlabelled row (WRENCH's unlabelled splits)
    elif not _is_int(label):
        raise AggregatorError(f"{path}: id {i}: label must be an int, got {label!r:.60}")
    data = row.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    return votes, label, text


def _read_label_names(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    names = _read_json(path)
    if not isinstance(names, dict) or not names:
        raise AggregatorError(f"{path}: expected a non-empty JSON object {{class index: name}}")
    try:
        index = sorted(int(c) for c in names)
    except ValueError:
        raise AggregatorError(f"{path}: class indices must be integers, got {list(names)}") from None
    if index != list(range(len(index))):
        raise AggregatorError(f"{path}: class indices must be 0..{len(index) - 1}, got {index}")
    if len(index) < 2:
        raise AggregatorError(f"{path}: need at least two classes, got {len(index)}")
    by_index = {int(c): str(n) for c, n in names.items()}
    return [by_index[c] for c in index]


def accuracy(posterior: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of (N, K) posteriors on rows with a label (>= 0); a tie of m classes counts 1/m.

    A tie is not a vote for its first class (the evaluate package's rule, restated here because the
    aggregator imports nothing of the project's): a uniform row scores 1/K, not "class 0"."""
    keep = labels >= 0
    post, y = posterior[keep], labels[keep]
    top = np.isclose(post, post.max(-1, keepdims=True), rtol=0, atol=1e-12)  # (N, K)
    return float((top[np.arange(len(y)), y] / top.sum(-1)).mean()) if len(y) else float("nan")
