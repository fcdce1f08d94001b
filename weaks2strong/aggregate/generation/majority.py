"""Majority vote over each example's candidates: every teacher's top answer is one vote."""
from __future__ import annotations

import numpy as np

from .base import CandidateLabelModel, _valid_columns, _with_none, check_candidates, teacher_answers


def majority_vote(scores, n_candidates) -> np.ndarray:
    """(N, Cmax + 1): each teacher's top answer is one vote; the row holds the vote shares, nudged by
    1e-6 x the teachers' summed probability so the argmax breaks ties by it. Rows nobody answered:
    uniform over the candidates. The none column is 0."""
    scores, nc = check_candidates(scores, n_candidates)
    n, _, cmax = scores.shape
    answer, _ = teacher_answers(scores)
    votes = np.zeros((n, cmax))
    ex, te = np.nonzero(answer >= 0)
    np.add.at(votes, (ex, answer[ex, te]), 1.0)
    mass = np.nansum(scores, 1)  # (N, Cmax) summed probability
    post = votes + 1e-6 * mass / scores.shape[1]
    valid = _valid_columns(nc, cmax)
    post = np.where(post.sum(1, keepdims=True) > 0, post, valid.astype(float))
    return _with_none(post / post.sum(1, keepdims=True))



class MajorityCandidates(CandidateLabelModel):
    """:func:`majority_vote` as a model (aggregator.method=majority): learns nothing."""

    needs_fit = False
    reads = "probs"

    def predict_proba(self, scores, n_candidates, gold=None) -> np.ndarray:
        return majority_vote(scores, n_candidates)
