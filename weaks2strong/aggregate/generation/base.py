"""The candidate-set face: weak LMs' scores over each example's own candidate answers in, a posterior
over those candidates (and "none of them") out.

Several weak LMs answered each question; the distinct (normalised) answers of example i are its C_i
candidates, padded to Cmax. Every aggregator here works on numbers only:

    scores        (N, T, Cmax) float: teacher t's probability distribution over example i's candidates
                  (entries >= C_i are 0; a whole row of NaN = teacher t has nothing for example i, it abstains)
    n_candidates  (N,) int >= 1
    gold          (N,) int, optional: -1 unknown, 0..C_i-1 a known candidate, Cmax = none of them is right

and returns an (N, Cmax + 1) posterior whose last column is "none of the candidates is correct"; padded
columns (C_i <= c < Cmax) are exactly 0. Nothing here knows about teachers, models or the pipeline.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..base import Aggregate, AggregatorError


class CandidateLabelModel:
    """The contract every candidate-set aggregator keeps (the candidate-set sibling of
    :class:`~weaks2strong.aggregate.base.LabelModel`).

    ``fit(scores, n_candidates, gold=None, teacher_names=None)`` learns from the teachers' scores;
    ``predict(scores, n_candidates, gold=None)`` gives an :class:`Aggregate` whose posterior is
    (N, Cmax + 1); ``predict_proba`` that posterior. What a model can do is declared:

    - ``supports_gold``: uses known candidates when fitting (anchored);
    - ``needs_fit``: False for rules that learn nothing (``fit`` then only returns the model);
    - ``reads``: which per-candidate numbers the pipeline hands it as ``scores``: ``"probs"`` (each
      teacher's distribution over the candidates), ``"logprobs"`` (its log-scores) or ``"greedy"``
      (a one-hot row at each teacher's greedy answer, a NaN row where it gave none).
    """

    supports_gold: ClassVar[bool] = False
    needs_fit: ClassVar[bool] = True
    reads: ClassVar[str] = "probs"

    def fit(self, scores, n_candidates, gold=None, teacher_names: list[str] | None = None) -> CandidateLabelModel:
        self._refuse_gold(gold)
        return self

    def predict(self, scores, n_candidates, gold=None) -> Aggregate:
        post = self.predict_proba(scores, n_candidates, gold)
        return Aggregate(posterior=post, confidence=post[:, :-1].max(1))

    def predict_proba(self, scores, n_candidates, gold=None) -> np.ndarray:
        raise NotImplementedError

    def fit_predict(self, scores, n_candidates, gold=None, teacher_names=None) -> Aggregate:
        return self.fit(scores, n_candidates, gold, teacher_names).predict(scores, n_candidates)

    def _refuse_gold(self, gold) -> None:
        if gold is not None and not self.supports_gold and (np.asarray(gold) >= 0).any():
            raise AggregatorError(f"{type(self).__name__} cannot use gold answers (supports_gold is False); "
                                  "fit it without gold (aggregator.anchor=none)")


# --------------------------------------------------------------------------------------------
# Input checks and each teacher's answer
# --------------------------------------------------------------------------------------------


def check_candidates(scores, n_candidates, teacher_names: list[str] | None = None,
                     atol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Validate (scores (N, T, Cmax), n_candidates (N,)); return them as float64 and int64.

    A teacher abstains on an example with a whole NaN row. Anything else odd (partial NaN, inf,
    negatives, mass on a padded column, a row that does not sum to one over its C_i candidates, a
    candidate count outside 1..Cmax) raises AggregatorError with one line naming example and teacher."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3:
        raise AggregatorError(f"candidate scores must have shape (examples, teachers, candidates); got {scores.shape}")
    n, t, cmax = scores.shape
    if n == 0:
        raise AggregatorError("no examples to aggregate (empty table)")
    if t == 0:
        raise AggregatorError("no teachers to aggregate")
    if cmax == 0:
        raise AggregatorError("candidate scores have no candidate column (Cmax = 0)")
    if teacher_names is not None and len(teacher_names) != t:
        raise AggregatorError(f"{len(teacher_names)} teacher names for {t} teachers")
    names = teacher_names or [f"teacher {j}" for j in range(t)]
    nc = np.asarray(n_candidates)
    if nc.shape != (n,):
        raise AggregatorError(f"n_candidates must have one entry per example ({n}), got shape {nc.shape}")
    if not np.issubdtype(nc.dtype, np.integer):
        raise AggregatorError(f"n_candidates must be integers, got dtype {nc.dtype}")
    bad = (nc < 1) | (nc > cmax)
    if bad.any():
        i = int(np.argmax(bad))
        raise AggregatorError(f"example {i} has n_candidates={int(nc[i])}, not in 1..{cmax} (Cmax)")
    valid = np.arange(cmax)[None, :] < nc[:, None]  # (N, Cmax)
    nan = np.isnan(scores)
    abstain = (nan | ~valid[:, None, :]).all(-1) & nan[..., 0]  # (N, T) whole row NaN over its candidates
    partial = (nan & valid[:, None, :]).any(-1) & ~abstain
    if partial.any():
        i, j = np.argwhere(partial)[0]
        raise AggregatorError(f"{names[j]}: scores contain NaN at example {i} (abstain with a whole NaN row)")
    seen = np.where(nan, 0.0, scores)
    if np.isinf(seen).any():
        i, j = np.argwhere(np.isinf(seen).any(-1))[0]
        raise AggregatorError(f"{names[j]}: scores are infinite at example {i}")
    if (seen < 0).any():
        i, j = np.argwhere((seen < 0).any(-1))[0]
        raise AggregatorError(f"{names[j]}: negative score at example {i}")
    padded = (seen > 0) & ~valid[:, None, :]
    if padded.any():
        i, j, c = np.argwhere(padded)[0]
        raise AggregatorError(f"{names[j]}: mass {seen[i, j, c]:.4g} on padded column {c} at example {i}, "
                              f"which has only {int(nc[i])} candidates")
    sums = seen.sum(-1)
    off = ~abstain & (np.abs(sums - 1.0) > atol)
    if off.any():
        i, j = np.argwhere(off)[0]
        raise AggregatorError(f"{names[j]}: scores at example {i} sum to {sums[i, j]:.4f} over its "
                              f"{int(nc[i])} candidates, not 1")
    scores = np.where(abstain[..., None], np.nan, seen)  # padded NaNs of a speaking teacher -> 0
    return scores, nc.astype(np.int64)


def check_gold(gold, n_candidates: np.ndarray, cmax: int) -> np.ndarray | None:
    """(N,) int64 gold (-1 unknown, 0..C_i-1 a candidate, Cmax none of them), or None when nothing is known."""
    if gold is None:
        return None
    gold = np.asarray(gold)
    n = n_candidates.shape[0]
    if gold.shape != (n,):
        raise AggregatorError(f"gold must have one entry per example ({n}), got shape {gold.shape}")
    if not np.issubdtype(gold.dtype, np.integer):
        raise AggregatorError(f"gold must hold integer candidate indices (-1 = unknown), got dtype {gold.dtype}")
    bad = (gold < -1) | ((gold >= n_candidates) & (gold != cmax))
    if bad.any():
        i = int(np.argmax(bad))
        raise AggregatorError(f"gold at example {i} is {int(gold[i])}: not -1 (unknown), a candidate in "
                              f"0..{int(n_candidates[i]) - 1} or {cmax} (none of them)")
    return gold.astype(np.int64) if (gold >= 0).any() else None


def teacher_answers(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(answer (N, T) int, -1 where the teacher abstains; confidence (N, T), its max probability, NaN
    where it abstains). Ties go to the lower candidate index."""
    spoke = ~np.isnan(scores[..., 0])  # (N, T)
    filled = np.nan_to_num(scores, nan=0.0)
    return np.where(spoke, filled.argmax(-1), -1), np.where(spoke, filled.max(-1), np.nan)



def _valid_columns(n_candidates: np.ndarray, cmax: int) -> np.ndarray:
    return np.arange(cmax)[None, :] < np.asarray(n_candidates)[:, None]  # (N, Cmax)


def _with_none(post: np.ndarray) -> np.ndarray:
    return np.concatenate([post, np.zeros((post.shape[0], 1))], 1)  # (N, Cmax + 1), none never chosen

