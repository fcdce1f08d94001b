"""Snorkel's label model (Ratner et al. 2019, matrix completion over the rules' agreements), for
comparison with ours, behind the same ``fit`` / ``predict`` as every aggregator."""
from __future__ import annotations

import warnings

from ..base import Aggregate, AggregatorError
from ._common import Rule, finish

INSTALL = "pip install --no-deps snorkel munkres (or --target data/bench_pkgs, as benchmarks/ do)"


class SnorkelLabelModel(Rule):
    """Snorkel 0.10's ``LabelModel`` on the teachers' hard votes (its label matrix: -1 = abstain).

    Inductive: ``fit`` learns the rules' accuracies from the votes, ``predict`` scores any rows. A
    row no teacher answered gets Snorkel's own answer (its learned class balance), as in WRENCH.
    Not a dependency of the project: ``snorkel`` must be importable (``INSTALL``)."""

    def __init__(self, n_epochs: int = 500, seed: int = 0):
        self.n_epochs = n_epochs
        self.seed = seed
        self.model_ = None

    def _fit(self, votes, gold) -> None:
        try:
            from snorkel.labeling.model import LabelModel
        except ImportError as err:
            raise ImportError(f"aggregator SnorkelLabelModel needs snorkel ({err}); {INSTALL}") from err
        if votes.n_sources < 3:  # its matrix completion needs three sources' agreements
            raise AggregatorError(f"Snorkel's label model needs at least 3 teachers; got {votes.n_sources}")
        self.model_ = LabelModel(cardinality=votes.n_classes, verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Snorkel's own deprecation chatter
            self.model_.fit(votes.dense(), n_epochs=self.n_epochs, seed=self.seed, progress_bar=False)

    def predict(self, votes) -> Aggregate:
        if self.model_ is None:
            raise RuntimeError("SnorkelLabelModel.predict before fit: it learns the rules' accuracies in fit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return finish(self.model_.predict_proba(self._votes(votes).dense()))  # (N, K); dense: Snorkel's L
