"""What the simple classification rules share: reading any accepted input (Votes, an (N, T, K)
probability array, an (N, T) vote matrix), the fit bookkeeping, and the uniform posterior of a row
nobody answered."""
from __future__ import annotations

import numpy as np

from ..base import Aggregate, LabelModel, confidence_from_posterior
from ..votes import Votes, as_votes


def is_dense(data) -> bool:
    return not isinstance(data, Votes) and np.ndim(data) == 3


def one_hot(votes: Votes) -> np.ndarray:
    """(N, T, K) one-hot answers with whole NaN rows where a source did not vote."""
    out = np.full((votes.n_rows, votes.n_sources, votes.n_classes), np.nan)
    out[votes.row, votes.source] = 0.0
    out[votes.row, votes.source, votes.label] = 1.0  # a source's last vote where it voted twice
    return out


def unchecked_votes(probs) -> Votes:
    """A dense array's votes (each row's argmax) without the fit's checks: predict has never
    refused a split where a teacher is silent throughout."""
    probs = np.asarray(probs, dtype=np.float64)  # (N, T, K), NaN rows = abstain
    i, j = np.nonzero(~np.isnan(probs).all(-1))
    rows = np.nan_to_num(probs[i, j], nan=-1.0)  # (M, K)
    return Votes(i, j, rows.argmax(-1), rows.max(-1), probs.shape[0], probs.shape[1], probs.shape[2])


def uniform_where_missing(posterior: np.ndarray) -> np.ndarray:
    """Rows with a NaN (nobody answered) become uniform, in place."""
    posterior[np.isnan(posterior).any(-1)] = 1.0 / posterior.shape[-1]
    return posterior


def finish(posterior: np.ndarray, teachers: dict | None = None) -> Aggregate:
    posterior = uniform_where_missing(posterior)  # (N, K)
    return Aggregate(posterior=posterior, confidence=confidence_from_posterior(posterior), teachers=teachers or {})


class Rule(LabelModel):
    """A label model whose ``fit`` checks its input, remembers the teachers and the number of classes,
    and hands the votes to ``_fit`` (nothing to learn by default)."""

    n_classes_: int | None = None

    def fit(self, votes, teacher_names: list[str] | None = None, gold=None) -> Rule:
        self._refuse_gold(gold)
        v = as_votes(votes, teacher_names)  # a dense array is checked here (check_probs)
        if teacher_names:
            self.teacher_names = list(teacher_names)
        else:
            self.teacher_names = list(v.source_names) or [f"teacher_{t}" for t in range(v.n_sources)]
        self.n_classes_ = v.n_classes
        self._fit(v, gold)
        return self

    def _fit(self, votes: Votes, gold) -> None:
        pass

    def _votes(self, data) -> Votes:
        """The votes to predict on: a dense array unchecked, anything else through ``as_votes``."""
        return unchecked_votes(data) if is_dense(data) else as_votes(data, None, self.n_classes_)

    def _probs(self, data) -> np.ndarray:
        """(N, T, K) probabilities to predict on: a dense array as it is, votes one-hot."""
        return np.asarray(data, dtype=np.float64) if is_dense(data) else one_hot(self._votes(data))
