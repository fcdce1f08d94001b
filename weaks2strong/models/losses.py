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


def logconf_coefficient(progress: float, aux_coef: float = 0.5, warmup_frac: float = 0.1) -> float:
    """The auxiliary weight α at a fraction ``progress`` of training: ``aux_coef · progress`` during the
    first ``warmup_frac`` of the steps, then ``aux_coef`` (as in Burns et al.'s released code, where the
    warm-up ramps with the raw step fraction)."""
    return aux_coef * (progress if progress < warmup_frac else 1.0)


def harden_predictions(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The student's own predictions made one-hot, thresholded so that the batch's class balance
    matches the targets' (Burns et al. 2023, App. A.4: "adaptive threshold"). probs, targets: (B, K).

    Two classes: class 0 wins on the rows whose p_0 is above the quantile at the targets' mean
    p_1. More classes: argmax (the paper defines the threshold for binary tasks only).
    """
    if probs.shape[-1] != 2:
        return F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)  # (B, K)
    threshold = torch.quantile(probs[:, 0], targets[:, 1].mean().clamp(0.0, 1.0))
    first = (probs[:, 0] >= threshold).to(probs.dtype)  # (B,)
    return torch.stack([first, 1.0 - first], dim=-1)  # (B, 2)


def logconf_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, alpha: float,
                 normalizer: torch.Tensor | None = None) -> torch.Tensor:
    """Burns et al. 2023's auxiliary confidence loss (§4.3.2, eq. 1), with our example weights:

    L = CE((1 − α) · q + α · hard(p_θ), p_θ), the student's own hardened predictions mixed into the
    weak targets so that it can overrule them where it is confident.

    logits: (B, K); targets: (B, K) soft weak targets; weights: (B,); alpha in [0, 1].
    """
    probs = logits.detach().float().softmax(-1)  # (B, K): the hardened targets carry no gradient
    mixed = (1.0 - alpha) * targets + alpha * harden_predictions(probs, targets)  # (B, K)
    return weighted_soft_cross_entropy(logits, mixed, weights, normalizer)


def weighted_teacher_forcing_loss(sequence_nll: torch.Tensor, candidate_probs: torch.Tensor, weights: torch.Tensor,
                                  normalizer: torch.Tensor | None = None) -> torch.Tensor:
    """Confidence-weighted teacher forcing over each example's candidate answers.

    L = Σ_i w_i Σ_c q_i(c) · NLL_θ(c | x_i) / Σ_i w_i
    (Cui et al. 2024, Bayesian WeakS-to-Strong, §3: the student is trained on the weak ensemble's
    outputs weighted by their estimated reliability; here q_i is the candidate posterior and w_i the
    example's confidence weight). NLL_θ(c | x_i) sums over the completion tokens only.

    sequence_nll: (B, C) the student's NLL of candidate c of example i (padding slots: any finite value);
    candidate_probs: (B, C) q_i, zero on padding slots; weights: (B,) >= 0. ``normalizer`` replaces
    Σ_i w_i (DDP: the mean over ranks of their weight sums), as in ``weighted_soft_cross_entropy``.
    """
    per_example = (candidate_probs * torch.where(candidate_probs > 0, sequence_nll,
                                                 sequence_nll.new_zeros(()))).sum(-1)  # (B,)
    total = weights.sum() if normalizer is None else normalizer
    return (weights * per_example).sum() / total.clamp_min(1e-12)


def preference_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                    reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor,
                    target_probs: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                    beta: float = 0.1, kind: str = "sigmoid", normalizer: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Confidence-weighted DPO on preference pairs: four (B,) sequence log-probs in (completion tokens
    summed), (loss, chosen rewards, rejected rewards) out.

    Δ_i = (log π(y⁺|x) − log π_ref(y⁺|x)) − (log π(y⁻|x) − log π_ref(y⁻|x))
    sigmoid: ℓ_i = −p_i log σ(βΔ_i) − (1 − p_i) log σ(−βΔ_i)   (Rafailov et al. 2023, eq. 7, DPO at
             p_i = 1; p_i = 1 − ε is conservative DPO, Mitchell 2023; Cui et al. 2024's cDPO with p_i
             and w_i from the weak ensemble's posterior)
    ipo:     ℓ_i = (Δ_i − (2p_i − 1) / (2β))²                    (Azar et al. 2023, eq. 17 at p_i = 1;
             a pair believed at p_i is asked for a margin (2p_i − 1) times as large)
    L = Σ_i w_i ℓ_i / Σ_i w_i (``normalizer`` replaces Σ_i w_i, as in ``weighted_soft_cross_entropy``).
    Rewards are β times each completion's log-ratio, detached (for logging and the implicit-reward judge).
    """
    delta = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)  # (B,)
    p = torch.ones_like(delta) if target_probs is None else target_probs.to(delta.dtype)  # (B,)
    w = torch.ones_like(delta) if weights is None else weights.to(delta.dtype)  # (B,)
    if kind == "sigmoid":
        per_pair = -p * F.logsigmoid(beta * delta) - (1 - p) * F.logsigmoid(-beta * delta)  # (B,)
    elif kind == "ipo":
        per_pair = (delta - (2 * p - 1) / (2 * beta)) ** 2  # (B,)
    else:
        raise ValueError(f"preference loss kind must be sigmoid or ipo, got {kind!r}")
    total = w.sum() if normalizer is None else normalizer
    loss = (w * per_pair).sum() / total.clamp_min(1e-12)
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()  # (B,)
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()  # (B,)
    return loss, chosen_rewards, rejected_rewards
