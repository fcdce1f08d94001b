"""weaks2strong: weak-to-strong supervision with a Bayesian aggregator of weak teachers."""

__version__ = "0.1.0"
