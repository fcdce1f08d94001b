"""What the fitted label model says about each source: accuracy with a credible interval, its
confusion (true class x answered class), coverage and likelihood weight."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ..sparse_em import design, expected_counts
from ..votes import Votes

CREDIBLE_MASS = 0.95


def teacher_report(model, v: Votes, codes: np.ndarray, q: np.ndarray) -> dict:
    """name -> {accuracy, accuracy_low, accuracy_high, confusion, n_labels, coverage, ...} under the
    posterior ``q``; the interval is the Beta posterior of the source's share of right answers, with
    the population prior for one-coin sources (what partial pooling did to it is visible there)."""
    t, k, b = model.n_sources_, model.n_classes_, model.stride_
    s = design(v.row, codes, v.n_rows, t * k * b)
    counts = expected_counts(s, q).reshape(t, k, b, k).sum(2)  # (T, answered class, true class)
    right = np.einsum("tcc->t", counts)
    total = counts.sum((1, 2))
    prior_a = np.where(model.one_coin_, model.mu_ * model.kappa_, 1.0)
    prior_b = np.where(model.one_coin_, (1 - model.mu_) * model.kappa_, 1.0)
    lo_q, hi_q = (1 - CREDIBLE_MASS) / 2, 1 - (1 - CREDIBLE_MASS) / 2
    low = stats.beta.ppf(lo_q, right + prior_a, total - right + prior_b)
    high = stats.beta.ppf(hi_q, right + prior_a, total - right + prior_b)
    n_labels = np.bincount(v.source, minlength=t)
    out = {}
    for j, name in enumerate(model.teacher_names_):
        conf = counts[j].T  # (true, answered)
        out[name] = {
            "kind": "one_coin" if model.one_coin_[j] else "confusion",
            "accuracy": float((right[j] + prior_a[j]) / (total[j] + prior_a[j] + prior_b[j])),
            "accuracy_low": float(low[j]),
            "accuracy_high": float(high[j]),
            "confusion": (conf / np.maximum(conf.sum(1, keepdims=True), 1e-12)).tolist(),
            "n_labels": int(n_labels[j]),
            "coverage": float(n_labels[j] / max(v.n_rows, 1)),
            "likelihood_weight": float(model.weight_[j]),
        }
    return out
