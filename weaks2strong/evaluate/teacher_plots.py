"""Figures for an aggregator: who errs how (teacher confusions), who errs together (error
correlation) and whether its confidence is honest.

The plotting functions take plain arrays and an output path, write the figure with the Agg
backend (no display needed) and return the path.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def teacher_arrays(teachers: dict, names: list[str] | None = None):
    """(names, confusion, low, high) arrays of shape (T, K, K) from an Aggregate.teachers dict."""
    names = list(teachers) if names is None else list(names)
    pick = lambda key: np.array([teachers[n][key] for n in names], dtype=float)  # noqa: E731
    return names, pick("confusion"), pick("confusion_low"), pick("confusion_high")


def plot_teacher_confusions(
    confusion: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    path,
    teacher_names: list[str] | None = None,
    class_names: list[str] | None = None,
    max_panels: int = 24,
    ncols: int = 4,
    credible_mass: float = 0.95,
):
    """One heatmap per teacher: rows = true class, columns = the teacher's answer.

    Each cell shows the posterior mean and, below it, the credible interval [low, high]. With more
    than ``max_panels`` teachers only the first ``max_panels`` are drawn (order them beforehand,
    e.g. by number of labels).
    """
    confusion, low, high = (np.asarray(a, dtype=float) for a in (confusion, low, high))  # (T, K, K) each
    square = confusion.ndim == 3 and confusion.shape[1] == confusion.shape[2]
    if not square or low.shape != confusion.shape or high.shape != confusion.shape:
        raise ValueError(f"confusion, low, high must be (T, K, K); got {confusion.shape}, {low.shape}, {high.shape}")
    t, k, _ = confusion.shape
    names = teacher_names or [f"teacher {j}" for j in range(t)]
    classes = [str(c) for c in (class_names or range(k))]
    shown = min(t, max_panels)
    ncols = max(1, min(ncols, shown))
    nrows = math.ceil(shown / ncols)
    cell = 1.6 + 0.6 * k  # room for the interval text and the tick labels of each panel
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 1.0, cell * nrows + 0.8), squeeze=False)
    font = max(5.0, 10.0 - k)
    for j, ax in enumerate(axes.flat):
        if j >= shown:
            ax.axis("off")
            continue
        im = ax.imshow(confusion[j], vmin=0.0, vmax=1.0, cmap="Blues")
        for r in range(k):
            for c in range(k):
                v = confusion[j, r, c]
                ax.text(c, r, f"{v:.2f}\n[{low[j, r, c]:.2f}, {high[j, r, c]:.2f}]", ha="center", va="center",
                        fontsize=font, color="white" if v > 0.6 else "black")
        acc = np.trace(confusion[j]) / k
        ax.set_title(f"{names[j]}\nmean diag {acc:.2f}", fontsize=9)
        ax.set_xticks(range(k), classes, fontsize=8)
        ax.set_yticks(range(k), classes if j % ncols == 0 else [""] * k, fontsize=8)
        if j % ncols == 0:
            ax.set_ylabel("true class")
        if j // ncols == nrows - 1:
            ax.set_xlabel("answer")
    more = f" (first {shown} of {t})" if shown < t else ""
    fig.suptitle(f"Teacher confusions: posterior mean, {credible_mass:.0%} credible interval{more}", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    return _save(fig, path)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10):
    """Equal-width bins of confidence: (centres, mean confidence, accuracy, count, ECE)."""
    confidence = np.asarray(confidence, dtype=float)  # (N,)
    correct = np.asarray(correct, dtype=float)  # (N,)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
        acc = np.bincount(which, weights=correct, minlength=bins) / count
    ece = float(np.nansum(count * np.abs(acc - mean_conf)) / max(count.sum(), 1))
    return (edges[:-1] + edges[1:]) / 2, mean_conf, acc, count, ece


def plot_reliability(posterior: np.ndarray, truth: np.ndarray, path, bins: int = 10, title: str = "Reliability"):
    """Reliability diagram: the posterior's top probability against the gold accuracy, in bins.

    ``posterior`` is (N, K), ``truth`` (N,) class ids (negative = no gold label, left out). A
    calibrated aggregator's bars sit on the diagonal; the ECE is in the title.
    """
    posterior = np.asarray(posterior, dtype=float)  # (N, K)
    truth = np.asarray(truth)  # (N,)
    keep = truth >= 0
    if not keep.any():
        raise ValueError("no example has a gold label")
    p, y = posterior[keep], truth[keep].astype(int)
    k = p.shape[1]
    conf = p.max(1)  # (n,)
    correct = p.argmax(1) == y
    edges = np.linspace(1.0 / k, 1.0, bins + 1)  # the top probability of K classes is >= 1/K
    scaled = (conf - 1.0 / k) / (1.0 - 1.0 / k)
    _, mean_conf, acc, count, _ = reliability_bins(scaled, correct, bins)
    mean_conf = 1.0 / k + mean_conf * (1.0 - 1.0 / k)
    ece = float(np.nansum(count * np.abs(acc - mean_conf)) / max(count.sum(), 1))
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = edges[1] - edges[0]
    filled = count > 0
    ax.bar(edges[:-1][filled], acc[filled], width=width, align="edge", edgecolor="black", alpha=0.7,
           label="gold accuracy")
    ax.plot([1.0 / k, 1.0], [1.0 / k, 1.0], "k--", lw=1, label="calibrated")
    ax.plot(mean_conf[filled], acc[filled], "o", color="tab:red", ms=4, label="accuracy at the bin's mean confidence")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title} (ECE {ece:.3f}, n={int(count.sum())})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    axh.bar(edges[:-1], count, width=width, align="edge", edgecolor="black", color="tab:gray")
    axh.set_yscale("log" if count.max() > 50 * max(count[filled].min(), 1) else "linear")
    axh.set_xlabel("posterior top probability")
    axh.set_ylabel("examples")
    return _save(fig, path)


def plot_error_correlation(matrix: np.ndarray, n_shared: np.ndarray, path, teacher_names: list[str] | None = None,
                           title: str = "Teacher error correlation"):
    """Heatmap of a (T, T) correlation of the teachers' errors; each cell shows r and the number of
    rows both teachers answered; an undefined r is a white cell marked n/a. Red = they err on the
    same examples, which the aggregator's conditional-independence assumption does not expect."""
    matrix, n_shared = np.asarray(matrix, dtype=float), np.asarray(n_shared)  # (T, T) each
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or n_shared.shape != matrix.shape:
        raise ValueError(f"matrix and n_shared must be (T, T); got {matrix.shape}, {n_shared.shape}")
    t = matrix.shape[0]
    names = teacher_names or [f"teacher {j}" for j in range(t)]
    size = 1.2 + 0.9 * t
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(np.ma.masked_invalid(matrix), vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    for r in range(t):
        for c in range(t):
            v = matrix[r, c]
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            ax.text(c, r, f"{text}\nn={n_shared[r, c]}", ha="center", va="center", fontsize=8,
                    color="white" if abs(np.nan_to_num(v)) > 0.6 else "black")
    ax.set_xticks(range(t), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(t), names, fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson r of errors")
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
