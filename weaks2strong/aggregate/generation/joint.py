"""Joint decoding restricted to the candidate set: the product of the weak models' distributions
(Cui et al. 2024, "Bayesian WeakS-to-Strong from Text Classification to Generation").
"""
from __future__ import annotations

import numpy as np

from ..base import AggregatorError
from .base import CandidateLabelModel, _valid_columns, _with_none


def joint_scores(log_scores, weights=None, n_candidates=None) -> np.ndarray:
    """(N, Cmax + 1): softmax over the candidates of sum_t w_t log p_t(c) (joint decoding of the weak
    models restricted to the candidate set, Cui et al. 2024); equal weights by default, abstaining
    teachers (NaN rows) skipped. ``n_candidates`` masks padded columns (without it, a column counts
    where some teacher gives it a finite log-score); a row no teacher answered, or whose teachers
    exclude every candidate between them, is uniform over its candidates. The none column is 0."""
    log_scores = np.asarray(log_scores, dtype=np.float64)
    if log_scores.ndim != 3:
        raise AggregatorError(f"log scores must have shape (examples, teachers, candidates); got {log_scores.shape}")
    n, t, cmax = log_scores.shape
    w = np.ones(t) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (t,) or not np.isfinite(w).all() or (w < 0).any():
        raise AggregatorError(f"weights must be {t} finite non-negative numbers, got {w}")
    spoke = ~np.isnan(log_scores).all(-1)  # (N, T)
    if n_candidates is not None:
        nc = np.asarray(n_candidates)
        if nc.shape != (n,) or (nc < 1).any() or (nc > cmax).any():
            raise AggregatorError(f"n_candidates must be (N,) integers in 1..{cmax}")
        valid = _valid_columns(nc, cmax)
    else:
        valid = (np.isfinite(log_scores) & spoke[..., None]).any(1)
        valid[~valid.any(1)] = True
    seen = np.where(spoke[..., None], log_scores, 0.0)
    if np.isnan(seen).any() or (seen > 1e-6).any():
        i, j = np.argwhere((np.isnan(seen) | (seen > 1e-6)).any(-1))[0]
        raise AggregatorError(f"teacher {j}: log scores at example {i} are NaN or above 0 (not log-probabilities)")
    use = spoke[..., None] & (w[None, :, None] > 0)  # a zero weight drops the teacher, -inf and all
    terms = w[None, :, None] * np.where(use, seen, 0.0)  # (N, T, Cmax)
    total = np.where(valid, terms.sum(1), -np.inf)  # (N, Cmax)
    top = total.max(1, keepdims=True)
    stuck = ~np.isfinite(top[:, 0])
    total[stuck] = np.where(valid[stuck], 0.0, -np.inf)
    top[stuck] = 0.0
    post = np.exp(total - top)
    return _with_none(post / post.sum(1, keepdims=True))



class JointCandidates(CandidateLabelModel):
    """:func:`joint_scores` with equal weights as a model (aggregator.method=joint): reads the
    teachers' log-scores; learns nothing."""

    needs_fit = False
    reads = "logprobs"

    def predict_proba(self, scores, n_candidates, gold=None) -> np.ndarray:
        return joint_scores(scores, None, n_candidates=n_candidates)
