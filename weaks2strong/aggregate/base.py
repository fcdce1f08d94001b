"""The aggregator face: teacher probabilities in, per-example posteriors out.

Every aggregator works on numbers only, an array ``probs`` of shape (N, T, K): N examples,
T teachers, K classes, with a whole row ``probs[i, t]`` set to NaN where teacher t abstained on
(or never saw) example i. Nothing here knows about teachers, models or the pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from weaks2strong.runtime.errors import UserInputError


@dataclass
class Aggregate:
    """What an aggregator says about each example (and, optionally, about each teacher)."""

    posterior: np.ndarray  # (N, K) soft target, rows sum to one
    confidence: np.ndarray  # (N,) in [0, 1]
    difficulty: np.ndarray | None = None  # (N,) in [0, 1], None if the model has no such notion
    teachers: dict = field(default_factory=dict)  # name -> {"accuracy": float, "confusion": [[..]], ...}


class AggregatorError(UserInputError):
    """Bad input to an aggregator; the message is one line naming what is wrong."""


def check_probs(probs: np.ndarray, teacher_names: list[str] | None = None, atol: float = 1e-3) -> np.ndarray:
    """Validate an (N, T, K) teacher-probability array; return it as float64.

    Abstentions are whole NaN rows. Anything else odd (partial NaN, inf, negatives, rows that do not
    sum to one, a teacher with no labels at all) raises AggregatorError with one line.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise AggregatorError(f"teacher probabilities must have shape (examples, teachers, classes); got {probs.shape}")
    n, t, k = probs.shape
    names = teacher_names or [f"teacher {j}" for j in range(t)]
    if n == 0:
        raise AggregatorError("no examples to aggregate (empty table)")
    if t == 0:
        raise AggregatorError("no teachers to aggregate")
    if k < 2:
        raise AggregatorError(f"need at least two classes, got {k}")
    nan = np.isnan(probs)
    abstain = nan.all(axis=-1)  # (N, T)
    partial = nan.any(axis=-1) & ~abstain
    if partial.any():
        i, j = np.argwhere(partial)[0]
        raise AggregatorError(f"{names[j]}: probabilities contain NaN at example {i} (abstain with a whole NaN row)")
    seen = np.where(abstain[..., None], 0.0, probs)
    if np.isinf(seen).any():
        i, j = np.argwhere(np.isinf(seen).any(-1))[0]
        raise AggregatorError(f"{names[j]}: probabilities are infinite at example {i}")
    if (seen < 0).any():
        i, j = np.argwhere((seen < 0).any(-1))[0]
        raise AggregatorError(f"{names[j]}: negative probability at example {i}")
    sums = seen.sum(-1)
    bad = ~abstain & (np.abs(sums - 1.0) > atol)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AggregatorError(f"{names[j]}: probabilities at example {i} sum to {sums[i, j]:.4f}, not 1")
    silent = abstain.all(axis=0)
    if silent.any():
        raise AggregatorError(f"{names[int(np.argmax(silent))]} has no labels at all (abstained on every example)")
    return probs


def confidence_from_posterior(posterior: np.ndarray) -> np.ndarray:
    """Rescaled max probability: 0 at the uniform posterior, 1 at a one-hot one."""
    k = posterior.shape[-1]
    return (posterior.max(-1) - 1.0 / k) / (1.0 - 1.0 / k)


def check_gold(gold, n: int, k: int) -> np.ndarray | None:
    """Gold classes (N,) as int64 with -1 for unknown; None stays None. One line on anything odd."""
    if gold is None:
        return None
    gold = np.asarray(gold)
    if gold.shape != (n,):
        raise AggregatorError(f"gold must have one entry per example ({n}), got shape {gold.shape}")
    if gold.size and not np.issubdtype(gold.dtype, np.integer):
        raise AggregatorError(f"gold must hold integer classes (-1 = unknown), got dtype {gold.dtype}")
    bad = (gold < -1) | (gold >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise AggregatorError(f"gold row {i}: class {gold[i]} outside [-1, {k - 1}]")
    return gold.astype(np.int64)


class LabelModel:
    """The contract every classification aggregator keeps (crowd-kit's ``fit`` / ``predict_proba``).

    ``fit(votes, teacher_names=None, gold=None)`` learns from the teachers' answers, where ``votes``
    is a :class:`~weaks2strong.aggregate.votes.Votes` list, an (N, T, K) probability array with NaN
    rows for abstentions, or an (N, T) integer matrix with -1 for an abstention. ``gold`` (N,) holds
    known classes (-1 = unknown); only a model that declares ``supports_gold`` accepts it.
    ``predict(votes)`` gives an :class:`Aggregate` for (possibly new) rows of the same teachers;
    ``predict_proba`` its posterior. What a model can do is declared, never guessed from signatures:

    - ``supports_gold``: uses known classes when fitting (semi-supervised / anchored);
    - ``supports_abstention``: a row a teacher skipped is fine (all of ours: it is the NaN row);
    - ``needs_fit``: False for rules that learn nothing (majority vote, the mean).
    """

    supports_gold: ClassVar[bool] = False
    supports_abstention: ClassVar[bool] = True
    needs_fit: ClassVar[bool] = True

    def fit(self, votes, teacher_names: list[str] | None = None, gold=None) -> LabelModel:
        raise NotImplementedError

    def predict(self, votes) -> Aggregate:
        raise NotImplementedError

    def predict_proba(self, votes) -> np.ndarray:
        return self.predict(votes).posterior

    def fit_predict(self, votes, teacher_names: list[str] | None = None, gold=None) -> Aggregate:
        return self.fit(votes, teacher_names, gold=gold).predict(votes)

    def _refuse_gold(self, gold) -> None:
        if gold is not None and not self.supports_gold:
            raise AggregatorError(f"{type(self).__name__} cannot use gold labels (supports_gold is False); "
                                  "fit it without gold (aggregator.anchor=none)")
