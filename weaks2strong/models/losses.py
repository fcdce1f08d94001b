"""Losses as small pure functions of tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                                normalizer: torch.Tensor | None = None) -> torch.Tensor:
    """Confidence-weighted teacher forcing on soft targets.

    L = Σ_i w_i · CE(q_i, p_θ(x_i)) / Σ_i w_i,  CE(q, p) = -Σ_k q_k log p_k
    (soft-label distillation, Hinton et al. 2015, with the per-example confidence weights of
    Cui et al. 2024, Bayesian WeakS-to-Strong, eq. for the weighted teacher-forcing loss).

    logits: (B, K) student scores; targets: (B, K) rows on the simplex; weights: (B,) >= 0.
    A batch whose weights are all zero contributes zero loss (and zero gradient). ``normalizer``
    replaces Σ_i w_i (DDP passes the mean over ranks of their weight sums, so that averaging the
    ranks' gradients gives the gradient of the whole global batch).
    """
    ce = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)  # (B,)
    total = weights.sum() if normalizer is None else normalizer
    return (weights * ce).sum() / total.clamp_min(1e-12)
