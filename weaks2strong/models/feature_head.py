"""A head over frozen encoder features (the ``probe_mpnet`` student) and the DataModule of its rows.

The features are computed once per (encoder, example) and cached (``weaks2strong.runtime.example_cache``), so
training touches only the head: a linear layer, or a one-hidden-layer MLP. ``SoftTargetModule`` trains
it with the same losses as the fine-tuned students (it calls ``net(features)`` on feature batches).
"""
from __future__ import annotations

import torch
from torch import nn


class FeatureHead(nn.Module):
    """K logits per feature row: ``out(dropout(x))`` when ``hidden == 0`` (a linear probe), else
    ``out(dropout(gelu(linear(dropout(x)))))``."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        body: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            body += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(hidden or in_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(features))  # (B, K)


def __getattr__(name: str):
    # A DataModule that moved to weaks2strong/student/data/ stays reachable here, lazily (models never
    # imports student at import time): conf/student/*.yaml's data._target_ names this path, and that
    # string is part of config_slice(cfg.student), which keys distill (cache keys).
    if name == "FeaturesDataModule":
        from weaks2strong.student.data.features import FeaturesDataModule

        return FeaturesDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
