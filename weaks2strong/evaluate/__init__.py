"""Metrics (torchmetrics), PGR, misfit, and the run report."""
from weaks2strong.evaluate.metrics import classification_metrics, misfit_gain, pgr, squared_error

__all__ = ["classification_metrics", "misfit_gain", "pgr", "squared_error"]
