"""Weighted majority vote: each teacher's vote counts the log-odds of its accuracy."""
from __future__ import annotations

import numpy as np

from ..base import Aggregate, AggregatorError, check_gold
from ..votes import Votes
from ._common import Rule, finish

MIN_GOLD_VOTES = 5  # fewer gold rows than this say too little about a teacher: use the no-gold estimate
MAX_ACCURACY = 0.99  # a perfect record would give an infinite weight


class WeightedMajorityVote(Rule):
    """Majority vote where teacher t's vote counts w_t = log((K - 1) a_t / (1 - a_t)), a_t its accuracy.

    That weight makes the vote the exact posterior of a simple model: every teacher is right with
    probability a_t and otherwise picks a wrong class uniformly, independently given the class, and
    the classes are equally likely a priori (Nitzan & Paroush 1982 for K = 2; the "one-coin"
    Dawid-Skene). So the posterior of row i is softmax_k(sum of w_t over the teachers that voted k):
    a row nobody voted on is uniform, and a tie in weight stays soft.

    a_t is clipped to [1/K + 0.01, 0.99], so every weight is positive and finite. It is estimated

    - with ``gold`` (N,) (-1 = unknown): as t's accuracy on the gold rows it voted on; a teacher
      with fewer than 5 such rows falls back to the estimate without gold;
    - without gold: as t's agreement with the majority vote of the *other* teachers (leave-one-out),
      over the rows where t and at least one other teacher voted; where the others tie, t agrees by
      1 / (number of tied classes) if its class is among them. A teacher that never votes beside
      another one gets the lowest accuracy, 1/K + 0.01 (alone on a row, its vote still decides it).

    Reads votes (each teacher's argmax), so cost grows with their number. ``accuracy_`` holds the
    estimates before clipping, ``weights_`` the weights; ``predict``'s ``teachers`` reports both.
    """

    supports_gold = True

    def _fit(self, votes: Votes, gold) -> None:
        k = votes.n_classes
        gold = check_gold(gold, votes.n_rows, k)
        accuracy = agreement_with_others(votes)  # (T,), NaN where a teacher never votes beside another
        if gold is not None:
            on = gold[votes.row] >= 0  # (M,) the votes on gold rows
            n = np.bincount(votes.source[on], minlength=votes.n_sources)  # (T,)
            right = np.bincount(votes.source[on], weights=votes.label[on] == gold[votes.row[on]],
                                minlength=votes.n_sources)
            accuracy = np.where(n >= MIN_GOLD_VOTES, right / np.maximum(n, 1), accuracy)
        low = 1.0 / k + 0.01
        clipped = np.clip(np.nan_to_num(accuracy, nan=low), low, MAX_ACCURACY)
        self.accuracy_ = accuracy
        self.weights_ = np.log((k - 1) * clipped / (1.0 - clipped))  # (T,) > 0

    def predict(self, votes) -> Aggregate:
        if getattr(self, "weights_", None) is None:
            raise AggregatorError("WeightedMajorityVote is not fitted; call fit first")
        v = self._votes(votes)
        if v.n_sources != len(self.weights_):
            raise AggregatorError(f"expected {len(self.weights_)} teachers as fitted, got {v.n_sources}")
        score = np.zeros((v.n_rows, v.n_classes))  # (N, K) summed weight per class
        np.add.at(score, (v.row, v.label), self.weights_[v.source])
        posterior = np.exp(score - score.max(-1, keepdims=True))  # softmax; all zeros (silent row): uniform
        posterior /= posterior.sum(-1, keepdims=True)
        teachers = {name: {"accuracy": float(a) if np.isfinite(a) else None, "weight": float(w)}
                    for name, a, w in zip(self.teacher_names, self.accuracy_, self.weights_)}
        return finish(posterior, teachers)


def agreement_with_others(votes: Votes) -> np.ndarray:
    """(T,) each source's mean agreement with the majority vote of the other sources, over the rows
    where it and at least one other voted (ties split evenly); NaN where there is no such row."""
    counts = np.zeros((votes.n_rows, votes.n_classes))  # (N, K)
    np.add.at(counts, (votes.row, votes.label), 1.0)
    others = counts[votes.row] - np.eye(votes.n_classes)[votes.label]  # (M, K) the row's votes but this one
    shared = others.sum(-1) > 0  # (M,)
    tied = others == others.max(-1, keepdims=True)  # (M, K) the others' majority class(es)
    agree = tied[np.arange(votes.n_votes), votes.label] / tied.sum(-1)  # (M,)
    n = np.bincount(votes.source[shared], minlength=votes.n_sources)
    total = np.bincount(votes.source[shared], weights=agree[shared], minlength=votes.n_sources)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan)
