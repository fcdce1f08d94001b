"""Aggregators: teacher probabilities (N, T, K) in, per-example posteriors out. Numbers only."""
from weaks2strong.aggregate.base import Aggregate, AggregatorError, check_probs

__all__ = ["Aggregate", "AggregatorError", "check_probs"]
