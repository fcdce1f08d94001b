"""Baseline aggregators: one teacher alone, majority vote, mean of probabilities, crowd-kit's DS."""
from __future__ import annotations

import numpy as np

from weaks2strong.aggregate.base import Aggregate, AggregatorError, check_probs, confidence_from_posterior


def _uniform_where_missing(posterior: np.ndarray) -> np.ndarray:
    k = posterior.shape[-1]
    missing = np.isnan(posterior).any(-1)
    posterior[missing] = 1.0 / k
    return posterior


class _Baseline:
    def fit(self, probs: np.ndarray, teacher_names: list[str] | None = None):
        check_probs(probs, teacher_names)
        self.teacher_names = teacher_names or [f"teacher_{t}" for t in range(probs.shape[1])]
        return self

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        return self.predict(probs).posterior

    def predict(self, probs: np.ndarray) -> Aggregate:
        posterior = _uniform_where_missing(self._posterior(np.asarray(probs, dtype=np.float64)))
        return Aggregate(posterior=posterior, confidence=confidence_from_posterior(posterior))


class SingleTeacher(_Baseline):
    """One named teacher's probabilities, as they are (the Burns et al. single weak supervisor), or
    with ``hard`` its answers, one-hot (for refined labels, whose probabilities are flat: on SST-2
    the hard-label student was 0.016 better on val, 3 seeds)."""

    def __init__(self, teacher: str, hard: bool = False):
        self.teacher, self.hard = teacher, hard

    def fit(self, probs, teacher_names=None):
        super().fit(probs, teacher_names)
        if self.teacher not in self.teacher_names:
            raise AggregatorError(f"aggregator.teacher='{self.teacher}' is not one of the teachers "
                                  f"({', '.join(self.teacher_names)})")
        return self

    def _posterior(self, probs):
        mine = probs[:, self.teacher_names.index(self.teacher)].copy()  # (N, K), NaN rows: abstained
        if not self.hard:
            return mine
        answered = ~np.isnan(mine).all(-1)
        mine[answered] = np.eye(mine.shape[1])[mine[answered].argmax(-1)]
        return mine


class MeanProbabilities(_Baseline):
    """The average of the teachers' probability rows, abstentions left out."""

    def _posterior(self, probs):
        with np.errstate(invalid="ignore"):
            return np.nanmean(probs, axis=1)


class MajorityVote(_Baseline):
    """Each teacher votes for its argmax; the posterior is the vote share (ties stay soft)."""

    def _posterior(self, probs):
        seen = ~np.isnan(probs).all(-1)  # (N, T)
        k = probs.shape[-1]
        onehot = np.eye(k)[np.nan_to_num(probs, nan=-1).argmax(-1)] * seen[..., None]  # (N, T, K)
        votes = onehot.sum(1)  # (N, K)
        with np.errstate(invalid="ignore"):
            return votes / votes.sum(-1, keepdims=True)


class CrowdKitDawidSkene(_Baseline):
    """crowd-kit's (non-Bayesian, EM) Dawid-Skene on the teachers' hard votes, for comparison."""

    def __init__(self, n_iter: int = 100):
        self.n_iter = n_iter

    def _posterior(self, probs):
        import pandas as pd
        from crowdkit.aggregation import DawidSkene

        seen = ~np.isnan(probs).all(-1)
        task, worker = np.nonzero(seen)
        labels = np.nan_to_num(probs, nan=-1).argmax(-1)[task, worker]
        table = pd.DataFrame({"task": task, "worker": worker, "label": labels})
        proba = DawidSkene(n_iter=self.n_iter).fit_predict_proba(table)
        out = np.full((probs.shape[0], probs.shape[2]), np.nan)  # rows no teacher answered stay NaN: uniform
        rows = proba.index.to_numpy()
        out[rows] = 0.0  # a class no teacher ever voted gets no mass
        out[np.ix_(rows, [int(c) for c in proba.columns])] = proba.to_numpy()
        return out
