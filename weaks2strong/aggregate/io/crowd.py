"""Crowd-style label tables and the (N, T, K) teacher-probability array.

A crowd data set is a long table with one row per label: (task, worker, label). The aggregators
work on numbers, so this module turns such a table into integer codes (and, for small problems,
into the dense (N, T, K) array with NaN rows for "worker never saw this task"), and back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..base import AggregatorError


@dataclass
class LongLabels:
    """A crowd table as integer codes: label m says worker ``worker[m]`` gave ``label[m]`` to ``task[m]``."""

    task: np.ndarray  # (M,) int index into tasks
    worker: np.ndarray  # (M,) int index into workers
    label: np.ndarray  # (M,) int index into classes
    tasks: list  # (N,) task ids in order of first appearance
    workers: list  # (T,) worker ids
    classes: list  # (K,) class labels, sorted

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.tasks), len(self.workers), len(self.classes)


def sort_classes(values) -> list:
    """Class labels in a stable order: numerically when they all are numbers, else as strings."""
    values = list(pd.Series(values).unique())
    try:
        return sorted(values, key=float)
    except (TypeError, ValueError):
        return sorted(values, key=str)


def table_to_long(
    df: pd.DataFrame,
    task: str = "task",
    worker: str = "worker",
    label: str = "label",
    classes: list | None = None,
    workers: list | None = None,
) -> LongLabels:
    """Encode a long (task, worker, label) table; raise AggregatorError naming the first bad thing.

    ``classes``/``workers`` fix the vocabularies (for predicting with a fitted model); then a label
    outside ``classes`` is an error, while rows of unknown workers are dropped by the caller's choice
    (here they are kept out and reported through ``worker == -1``).
    """
    if not isinstance(df, pd.DataFrame):
        raise AggregatorError(f"expected a pandas DataFrame of labels, got {type(df).__name__}")
    for col in (task, worker, label):
        if col not in df.columns:
            raise AggregatorError(f"label table has no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise AggregatorError("no examples to aggregate (empty table)")
    for col in (task, worker, label):
        missing = df[col].isna().to_numpy()
        if missing.any():
            raise AggregatorError(f"label table row {int(np.argmax(missing))}: column {col!r} is empty")
    if classes is None:
        classes = sort_classes(df[label])
    class_index = pd.Index(classes)
    lab = class_index.get_indexer(df[label])
    if (lab < 0).any():
        row = int(np.argmax(lab < 0))
        raise AggregatorError(
            f"label table row {row}: column {label!r} has class {df[label].iloc[row]!r} outside classes {list(classes)}"
        )
    task_codes, task_ids = pd.factorize(df[task], sort=False)
    if workers is None:
        worker_codes, worker_ids = pd.factorize(df[worker], sort=False)
        workers = list(worker_ids)
    else:
        worker_codes = pd.Index(workers).get_indexer(df[worker])
    return LongLabels(
        task=task_codes.astype(np.int64),
        worker=np.asarray(worker_codes, dtype=np.int64),
        label=lab.astype(np.int64),
        tasks=list(task_ids),
        workers=list(workers),
        classes=list(classes),
    )


def long_to_probs(labels: LongLabels) -> np.ndarray:
    """The dense (N, T, K) array: one-hot rows, NaN where a worker did not label a task.

    A worker who labelled the same task twice gets the average of its one-hot votes (a soft row).
    Memory is N*T*K floats: fine for thousands of tasks and hundreds of workers, not for millions.
    """
    n, t, k = labels.shape
    keep = labels.worker >= 0
    counts = np.zeros((n, t, k))
    np.add.at(counts, (labels.task[keep], labels.worker[keep], labels.label[keep]), 1.0)
    total = counts.sum(-1, keepdims=True)  # (N, T, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = counts / total
    probs[(total == 0).squeeze(-1)] = np.nan
    return probs


def probs_to_table(probs: np.ndarray, tasks=None, workers=None, classes=None,
                   task="task", worker="worker", label="label") -> pd.DataFrame:
    """The long table of argmax labels from an (N, T, K) array (abstentions are left out)."""
    probs = np.asarray(probs, dtype=np.float64)
    n, t, k = probs.shape
    tasks = list(range(n)) if tasks is None else list(tasks)
    workers = list(range(t)) if workers is None else list(workers)
    classes = list(range(k)) if classes is None else list(classes)
    seen = ~np.isnan(probs).all(-1)  # (N, T)
    i, j = np.nonzero(seen)
    best = np.nanargmax(probs[i, j], axis=-1)
    return pd.DataFrame(
        {
            task: np.asarray(tasks, dtype=object)[i],
            worker: np.asarray(workers, dtype=object)[j],
            label: np.asarray(classes, dtype=object)[best],
        }
    )
