"""The mean of the teachers' probability rows."""
from __future__ import annotations

import warnings

import numpy as np

from ..base import Aggregate
from ._common import Rule, finish


class MeanProbabilities(Rule):
    """The average of the teachers' probability rows, abstentions left out; a row nobody answered is
    uniform. Votes (or an (N, T) matrix) count as one-hot rows, so there it is the majority vote.
    Learns nothing: ``predict`` works unfitted."""

    needs_fit = False

    def predict(self, votes) -> Aggregate:
        probs = self._probs(votes)  # (N, T, K), NaN rows = abstain
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # a silent row: uniform
            return finish(np.nanmean(probs, axis=1))  # (N, K)
