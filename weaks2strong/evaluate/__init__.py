"""Metrics (torchmetrics), PGR, misfit, and the run report."""
from weaks2strong.evaluate.metrics import classification_metrics, misfit, pgr

__all__ = ["classification_metrics", "misfit", "pgr"]
