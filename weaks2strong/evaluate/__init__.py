"""Metrics (torchmetrics), PGR, misfit, and the run report."""
from weaks2strong.evaluate.metrics import (
    classification_metrics,
    error_correlation,
    estimates_summary,
    misfit_gain,
    pgr,
    squared_error,
    teacher_analysis,
)

__all__ = ["classification_metrics", "error_correlation", "estimates_summary", "misfit_gain", "pgr", "squared_error",
           "teacher_analysis"]
