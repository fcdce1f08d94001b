"""Scores of predictions against gold, and the weak-to-strong summaries built on them."""
from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import auroc


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and AUROC of (N, K) probabilities against gold ids.

    A tie is not a prediction of its first class: a row whose top probability is shared by m classes
    counts 1/m if the gold class is among them (the expected accuracy of breaking the tie at random).
    So an abstained row (NaN, scored as uniform) counts 1/K towards ``accuracy``, and as a uniform
    row in AUROC; ``accuracy_where_answered`` and ``coverage`` stand beside it."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    k = probs.shape[1]
    covered = ~np.isnan(probs).any(-1)
    filled = np.where(covered[:, None], probs, 1.0 / k)
    top = np.isclose(filled, filled.max(-1, keepdims=True), rtol=0, atol=1e-12)  # (N, K) the tied maxima
    hits = top[np.arange(len(labels)), labels] / top.sum(-1)
    accuracy = float(hits.mean())
    p, y = torch.tensor(filled, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    auc = auroc(p[:, 1], y, task="binary") if k == 2 else auroc(p, y, task="multiclass", num_classes=k)
    answered = float(hits[covered].mean()) if covered.any() else math.nan
    return {"accuracy": accuracy, "auroc": float(auc), "coverage": float(covered.mean()),
            "accuracy_where_answered": answered}


def pgr(student: float, weak: float, ceiling: float) -> float:
    """Performance gap recovered, (student − weak) / (ceiling − weak) (Burns et al. 2023, §3).

    NaN when the ceiling does not beat the weak supervisor: there is no gap to recover, and the
    ratio's sign would flip (a student below a weak teacher that beats the ceiling would score > 0).
    """
    gap = ceiling - weak
    return (student - weak) / gap if gap > 1e-12 else math.nan


def squared_error(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """err(p) = E‖p − e_y‖², the squared loss on the simplex (Charikar et al. 2024). probs: (N, K)."""
    onehot = np.eye(probs.shape[1])[labels]  # (N, K)
    return float(np.average(((probs - onehot) ** 2).sum(-1), weights=weights))


def misfit_gain(student: np.ndarray, targets: np.ndarray, labels: np.ndarray,
                weights: np.ndarray | None = None) -> dict[str, float | bool]:
    """Charikar et al. 2024 (Thm. 1): when the student's function class is convex, the gain over the
    weak targets, err(targets) − err(student), is at least the misfit E‖student − targets‖².

    student, targets: (N, K) probabilities; labels: (N,) gold ids (for the report only); weights:
    (N,) the student's training weights, for the weighted misfit. The gain is in squared loss, where
    the theorem is stated: with 0-1 loss the comparison is vacuous."""
    gain = squared_error(targets, labels) - squared_error(student, labels)
    gap = ((student - targets) ** 2).sum(-1)  # (N,)
    misfit = float(gap.mean())
    out = {"err_targets": squared_error(targets, labels), "err_student": squared_error(student, labels),
           "gain": gain, "misfit": misfit, "gain_ge_misfit": bool(gain >= misfit),
           "disagreement": float((student.argmax(-1) != targets.argmax(-1)).mean())}
    if weights is not None and weights.sum() > 0:
        weighted = float(np.average(gap, weights=weights))
        out.update(misfit_weighted=weighted, gain_ge_misfit_weighted=bool(gain >= weighted))
    return out
