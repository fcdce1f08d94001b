"""Which rules fire together beyond what the class explains, and how much likelihood they share.

Two keyword rules for the same class that match the same phrases are one piece of evidence written
twice: under conditional independence the model would count it twice. Their dependence is measured
from the votes alone, as the correlation of their firing within each class (weighted by the class
posterior), averaged over classes: 1 for a copy, about 0 for rules that co-fire only because they
share a class. Pairs above a threshold share their weight (a composite likelihood): a rule with m
copies counts 1/m each, so the group counts once.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ..votes import Votes


def firing_dependence(v: Votes, q: np.ndarray, one_coin: np.ndarray, min_co_fired: int = 5) -> np.ndarray:
    """(T, T) class-conditional firing correlation between one-coin sources of the same class.

    ``q`` (N, K) is the class posterior. Pairs that co-fired on fewer than ``min_co_fired`` rows, that
    vote different classes, or that involve a source with a full confusion get 0; the diagonal is 1."""
    t = v.n_sources
    fired = sparse.csr_matrix((np.ones(v.n_votes), (v.row, v.source)), shape=(v.n_rows, t))
    fired.data[:] = 1.0  # a source that voted twice on a row still fired once
    co_count = np.asarray((fired.T @ fired).todense())  # (T, T)
    polarity = np.full(t, -1)
    polarity[v.source] = v.label  # one-coin sources vote one class only
    corr = np.zeros((t, t))
    n = v.n_rows
    for k in range(q.shape[1]):
        w = q[:, k]
        mass = w.sum()
        if mass <= 1e-9:
            continue
        p = np.asarray(fired.T @ w).ravel() / mass  # (T,) firing rate within class k
        co = np.asarray((fired.T @ fired.multiply(w[:, None])).todense()) / mass  # (T, T)
        sd = np.sqrt(np.clip(p * (1 - p), 1e-12, None))
        corr += (mass / n) * (co - np.outer(p, p)) / np.outer(sd, sd)
    ok = np.outer(one_coin, one_coin) & (polarity[:, None] == polarity[None, :]) & (co_count >= min_co_fired)
    dep = np.where(ok, np.clip(corr, 0.0, 1.0), 0.0)
    np.fill_diagonal(dep, 1.0)
    return dep


def tempering_weights(dep: np.ndarray, threshold: float) -> np.ndarray:
    """(T,) likelihood weights: 1 / (1 + the summed dependence of a source's partners above threshold)."""
    strong = np.where(dep >= threshold, dep, 0.0)
    np.fill_diagonal(strong, 1.0)
    return 1.0 / strong.sum(1)
