"""One teacher alone (the Burns et al. single weak supervisor)."""
from __future__ import annotations

import numpy as np

from ..base import Aggregate, AggregatorError
from ..votes import Votes
from ._common import Rule, finish, is_dense


class SingleTeacher(Rule):
    """One named teacher's probabilities, as they are (the Burns et al. single weak supervisor), or
    with ``hard`` its answers, one-hot (for refined labels, whose probabilities are flat: on SST-2
    the hard-label student was 0.016 better on val, 3 seeds). Where it abstained: uniform."""

    def __init__(self, teacher: str, hard: bool = False):
        self.teacher, self.hard = teacher, hard

    def _fit(self, votes: Votes, gold) -> None:
        if self.teacher not in self.teacher_names:
            raise AggregatorError(f"aggregator.teacher='{self.teacher}' is not one of the teachers "
                                  f"({', '.join(self.teacher_names)})")

    def predict(self, votes) -> Aggregate:
        t = self.teacher_names.index(self.teacher)
        if is_dense(votes):
            mine = np.asarray(votes, dtype=np.float64)[:, t].copy()  # (N, K), NaN rows: abstained
        else:  # a vote is a one-hot answer
            v = self._votes(votes)
            mine = np.full((v.n_rows, v.n_classes), np.nan)
            m = v.source == t
            mine[v.row[m]] = np.eye(v.n_classes)[v.label[m]]
        if self.hard:
            answered = ~np.isnan(mine).all(-1)
            mine[answered] = np.eye(mine.shape[1])[mine[answered].argmax(-1)]
        return finish(mine)
