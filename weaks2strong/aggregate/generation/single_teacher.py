"""One teacher's answer as the aggregate (the best-single-teacher baseline)."""
from __future__ import annotations

import numpy as np

from ..base import AggregatorError
from .base import CandidateLabelModel, _valid_columns, _with_none, check_candidates


def best_single(scores, n_candidates, teacher: int) -> np.ndarray:
    """(N, Cmax + 1): one teacher's distribution over the candidates as it is; uniform where it abstains."""
    scores, nc = check_candidates(scores, n_candidates)
    if not 0 <= teacher < scores.shape[1]:
        raise AggregatorError(f"teacher {teacher} is not one of the {scores.shape[1]} teachers")
    row = scores[:, teacher]  # (N, Cmax)
    valid = _valid_columns(nc, scores.shape[2])
    post = np.where(np.isnan(row).all(1, keepdims=True), valid / nc[:, None], row)
    return _with_none(post)



class BestSingleTeacher(CandidateLabelModel):
    """One teacher's greedy answer as the posterior (aggregator.method=single; the pipeline passes the
    teacher with the best val exact match). Reads one-hot greedy answers (``reads = "greedy"``): the
    row is 1 at teacher ``teacher``'s answer; where it gave none (a NaN row) the 1 sits at column
    C_i, as the pipeline has always written it. Learns nothing."""

    needs_fit = False
    reads = "greedy"

    def __init__(self, teacher: int):
        self.teacher = teacher

    def predict_proba(self, scores, n_candidates, gold=None) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        nc = np.asarray(n_candidates)
        n, t, cmax = scores.shape
        if not 0 <= self.teacher < t:
            raise AggregatorError(f"teacher {self.teacher} is not one of the {t} teachers")
        row = scores[:, self.teacher]  # (N, Cmax)
        spoke = ~np.isnan(row).all(1)
        post = np.zeros((n, cmax + 1))
        post[np.arange(n), np.where(spoke, np.nan_to_num(row, nan=0.0).argmax(1), nc)] = 1.0
        return post
