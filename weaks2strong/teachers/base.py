"""The teacher protocol and the check every teacher output passes before it is saved."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks import Task


class TeacherError(UserInputError):
    """A teacher that cannot run or that returned bad output; one line naming it."""


class Teacher(Protocol):
    """``fit`` learns from the task's ``weak_train`` split (a no-op for fixed teachers);
    ``predict_proba`` returns (N, K) class probabilities for a split, a whole NaN row where the
    teacher abstains."""

    def fit(self, task: Task) -> None: ...

    def predict_proba(self, task: Task, split: str) -> np.ndarray: ...


def check_proba(probs: np.ndarray, name: str, split: str, n: int, k: int, atol: float = 1e-3) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n, k):
        raise TeacherError(f"teacher '{name}' returned shape {probs.shape} on {split}, expected ({n}, {k})")
    abstain = np.isnan(probs).all(-1)
    seen = probs[~abstain]
    if np.isnan(seen).any() or np.isinf(seen).any():
        row = int(np.flatnonzero(~np.isfinite(probs).all(-1) & ~abstain)[0])
        raise TeacherError(f"teacher '{name}' returned NaN or inf probabilities on {split} row {row}")
    if (seen < 0).any():
        row = int(np.flatnonzero((np.nan_to_num(probs) < 0).any(-1))[0])
        raise TeacherError(f"teacher '{name}' returned a negative probability on {split} row {row}")
    bad = ~abstain & (np.abs(np.nan_to_num(probs).sum(-1) - 1) > atol)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TeacherError(f"teacher '{name}' returned probabilities summing to {probs[row].sum():.4f} "
                           f"on {split} row {row}, not 1")
    if abstain.all():
        raise TeacherError(f"teacher '{name}' abstained on every example of {split}")
    return probs
