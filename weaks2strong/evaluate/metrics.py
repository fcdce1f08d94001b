"""Scores of predictions against gold, and the weak-to-strong summaries built on them."""
from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import accuracy, auroc


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and AUROC of (N, K) probabilities against gold ids; abstained rows (NaN) are
    scored as uniform guesses, and ``coverage`` says how many were not."""
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    covered = ~np.isnan(probs).any(-1)
    filled = np.where(covered[:, None], probs, 1.0 / k)
    p, y = torch.tensor(filled, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    if k == 2:
        auc = auroc(p[:, 1], y, task="binary")
        acc = accuracy(p[:, 1], y, task="binary")
    else:
        auc = auroc(p, y, task="multiclass", num_classes=k)
        acc = accuracy(p, y, task="multiclass", num_classes=k, average="micro")
    answered = float((probs[covered].argmax(-1) == labels[covered]).mean()) if covered.any() else math.nan
    return {"accuracy": float(acc), "auroc": float(auc), "coverage": float(covered.mean()),
            "accuracy_where_answered": answered}


def pgr(student: float, weak: float, ceiling: float) -> float:
    """Performance gap recovered, (student − weak) / (ceiling − weak) (Burns et al. 2023, §3).

    NaN when the ceiling does not beat the weak supervisor: there is no gap to recover, and the
    ratio's sign would flip (a student below a weak teacher that beats the ceiling would score > 0).
    """
    gap = ceiling - weak
    return (student - weak) / gap if gap > 1e-12 else math.nan


def misfit(student_probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """How far the student moved from the labels it was trained on (Charikar et al. 2024 bound the
    gain over the weak teacher from below by this misfit): the disagreement rate of the argmaxes and
    the mean KL(target ‖ student)."""
    eps = 1e-12
    q, p = np.clip(targets, eps, 1.0), np.clip(student_probs, eps, 1.0)
    kl = float((q * (np.log(q) - np.log(p))).sum(-1).mean())
    return {"disagreement": float((student_probs.argmax(-1) != targets.argmax(-1)).mean()), "kl": kl}
