"""Losses as small pure functions of tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Confidence-weighted teacher forcing on soft targets.

    L = Σ_i w_i · CE(q_i, p_θ(x_i)) / Σ_i w_i,  CE(q, p) = -Σ_k q_k log p_k
    (soft-label distillation, Hinton et al. 2015, with the per-example confidence weights of
    Cui et al. 2024, Bayesian WeakS-to-Strong, eq. for the weighted teacher-forcing loss).

    logits: (B, K) student scores; targets: (B, K) rows on the simplex; weights: (B,) >= 0.
    A batch whose weights are all zero contributes zero loss (and zero gradient).
    """
    ce = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)  # (B,)
    return (weights * ce).sum() / weights.sum().clamp_min(1e-12)
