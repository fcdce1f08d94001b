"""Majority vote: each teacher votes for its argmax class; the posterior is the vote share."""
from __future__ import annotations

import numpy as np

from ..base import Aggregate
from ._common import Rule, finish


class MajorityVote(Rule):
    """Each teacher votes for its argmax; the posterior is the vote share (ties stay soft: a 1-1 split
    is [0.5, 0.5]); a row nobody voted on is uniform. Learns nothing: ``predict`` works unfitted.
    Cost grows with the number of votes (a Votes list or an (N, T) matrix is read sparsely)."""

    needs_fit = False

    def predict(self, votes) -> Aggregate:
        v = self._votes(votes)
        counts = np.zeros((v.n_rows, v.n_classes))  # (N, K) votes per class
        np.add.at(counts, (v.row, v.label), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return finish(counts / counts.sum(-1, keepdims=True))  # 0/0 on silent rows: uniform
