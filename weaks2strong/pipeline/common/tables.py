"""The layout of every artifact table: (split, example_id, p_0..p_{K-1}, ...) rows in a split's
order, and the task's cache key."""
from __future__ import annotations

import numpy as np
import pandas as pd

from weaks2strong.runtime.artifacts import Artifact, frame_hash, stable_hash
from weaks2strong.tasks import Task


def prob_columns(k: int) -> list[str]:
    return [f"p_{c}" for c in range(k)]


def split_frame(task: Task, split: str, probs: np.ndarray) -> pd.DataFrame:
    """(split, example_id, p_0..p_{K-1}) rows in the split's order: the layout of every artifact table."""
    frame = pd.DataFrame(probs, columns=prob_columns(task.num_classes))
    frame.insert(0, "example_id", task.split(split)["example_id"].to_numpy())
    frame.insert(0, "split", split)
    return frame


def split_rows(artifact: Artifact, table: str, task: Task, split: str) -> pd.DataFrame:
    """The rows of an artifact table for a split, in the split's order (the inverse of split_frame)."""
    frame = artifact.table(table).query(f"split == '{split}'").set_index("example_id")
    return frame.loc[task.split(split)["example_id"]]


def split_probs(artifact: Artifact, table: str, task: Task, split: str) -> np.ndarray:
    return split_rows(artifact, table, task, split)[prob_columns(task.num_classes)].to_numpy()


def task_key(task: Task) -> str:
    """The key of the task's rows; the splits that a stage cannot read do not enter it, so sealing the
    test split changes no key, and no stage before evaluate depends on the test rows."""
    readable = [s for s in task.splits if not (s == "test" and task.sealed)]
    return stable_hash(task.name, task.classes, task.prompt, task.verbalizers,
                       {s: frame_hash(task.split(s)) for s in readable})
