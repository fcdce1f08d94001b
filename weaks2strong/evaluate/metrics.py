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
    hits = _hits(filled, labels)
    accuracy = float(hits.mean())
    p, y = torch.tensor(filled, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    auc = auroc(p[:, 1], y, task="binary") if k == 2 else auroc(p, y, task="multiclass", num_classes=k)
    answered = float(hits[covered].mean()) if covered.any() else math.nan
    return {"accuracy": accuracy, "auroc": float(auc), "coverage": float(covered.mean()),
            "accuracy_where_answered": answered}


def _hits(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(..., K) probabilities, (...) gold ids -> (...) credit in [0, 1]: 1/m when the gold class is
    among m tied maxima (breaking the tie at random), else 0."""
    top = np.isclose(probs, probs.max(-1, keepdims=True), rtol=0, atol=1e-12)  # (..., K) the tied maxima
    return np.take_along_axis(top, labels[..., None], -1)[..., 0] / top.sum(-1)


def error_correlation(probs: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of the teachers' errors, each pair on the rows where both answered.

    probs: (N, T, K), a NaN row where a teacher abstained; gold: (N,) class ids. A teacher's error on
    a row is 1 − its credit (1 for a wrong argmax, 0 for a right one; a tie counts as in
    ``classification_metrics``). Returns the (T, T) correlation and the (T, T) number of shared rows;
    a pair is NaN when it shares fewer than 2 rows or either error is constant on them (no variance,
    no correlation), and a defined diagonal is 1 (a teacher's own answered rows)."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold)
    n, t, _ = probs.shape
    answered = (~np.isnan(probs).any(-1)).astype(np.float64)  # (N, T)
    errors = 1.0 - _hits(np.nan_to_num(probs), np.broadcast_to(gold[:, None], (n, t)))  # (N, T)
    errors *= answered  # an abstention adds nothing to any sum below
    # sums over the rows both i and j answered, all pairs at once: shared[i, j], sum_i[i, j] = Σ e_i, ...
    shared = answered.T @ answered  # (T, T)
    sum_i = errors.T @ answered  # (T, T) Σ e_i over the pair's rows
    sum_ii = (errors**2).T @ answered  # (T, T) Σ e_i²
    cov = shared * (errors.T @ errors) - sum_i * sum_i.T  # n² · covariance
    var_i = shared * sum_ii - sum_i**2  # n² · variance of e_i on the pair's rows
    var_j = var_i.T
    # an error that never varies has no correlation: a relative tolerance keeps rounding from faking one
    defined = (shared >= 2) & (var_i > 1e-12 * shared**2) & (var_j > 1e-12 * shared**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(defined, cov / np.sqrt(var_i * var_j), np.nan)
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, np.where(np.diag(defined), 1.0, np.nan))
    return corr, shared.astype(np.int64)


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


def teacher_analysis(estimates: dict, scores: dict) -> dict:
    """The aggregator's estimate of each teacher's accuracy next to its true accuracy on w2s_train
    (where it answered: the aggregator sees only the answered rows), whether the interval covers it
    and by how much the estimate misses. estimates: name -> {"accuracy", "accuracy_low",
    "accuracy_high"} (any may be missing); scores: name -> split -> ``classification_metrics``."""
    out = {}
    for name, score in scores.items():
        est = estimates.get(name, {})
        true = score["w2s_train"]["accuracy_where_answered"]
        point, low, high = est.get("accuracy"), est.get("accuracy_low"), est.get("accuracy_high")
        known = true is not None and math.isfinite(true)  # NaN when the teacher answered no w2s_train row
        out[name] = {"true_accuracy_w2s_train": true, "estimated_accuracy": point, "estimated_interval": [low, high],
                     "covered": bool(low <= true <= high) if known and None not in (low, high) else None,
                     "abs_error": abs(point - true) if known and point is not None else None}
    return out


def estimates_summary(analysis: dict) -> dict:
    """Over the teachers of ``teacher_analysis``: the share whose interval covers the true accuracy
    (``n`` of them have an interval) and the mean absolute error of the point estimates. None where
    the aggregator gave nothing to score."""
    covered = [a["covered"] for a in analysis.values() if a["covered"] is not None]
    errors = [a["abs_error"] for a in analysis.values() if a["abs_error"] is not None]
    return {"coverage": float(np.mean(covered)) if covered else None, "n": len(covered),
            "mae": float(np.mean(errors)) if errors else None}
