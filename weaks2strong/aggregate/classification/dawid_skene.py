"""crowd-kit's Dawid-Skene (EM, non-Bayesian), for comparison with ours (``aggregate/bayes.py``)."""
from __future__ import annotations

import numpy as np

from ..base import Aggregate
from ._common import Rule, finish


class CrowdKitDawidSkene(Rule):
    """crowd-kit's (non-Bayesian, EM) Dawid-Skene on the teachers' hard votes, for comparison.

    Transductive, as crowd-kit's is: ``predict`` runs EM on the rows it is given (``fit`` only checks
    the input). A row no teacher answered is uniform; a class nobody voted for gets no mass. Needs the
    ``baselines`` extra (crowd-kit)."""

    def __init__(self, n_iter: int = 100):
        self.n_iter = n_iter

    def predict(self, votes) -> Aggregate:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene

        v = self._votes(votes)
        table = pd.DataFrame({"task": v.row, "worker": v.source, "label": v.label})
        proba = DawidSkene(n_iter=self.n_iter).fit_predict_proba(table)  # (answered rows, voted classes)
        out = np.full((v.n_rows, v.n_classes), np.nan)  # rows no teacher answered stay NaN: uniform
        rows = proba.index.to_numpy()
        out[rows] = 0.0  # a class no teacher ever voted gets no mass
        out[np.ix_(rows, [int(c) for c in proba.columns])] = proba.to_numpy()
        return finish(out)
