"""Teacher outputs as discrete answers for the Bayesian aggregator: a long (example, teacher) table,
each soft output binned into (argmax class, confidence bin), padded per example for the model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .io.crowd import LongLabels

# --------------------------------------------------------------------------------------------
# Soft outputs -> discrete answers
# --------------------------------------------------------------------------------------------


@dataclass
class Long:
    """Teacher outputs as one row per (example, teacher) label that exists."""

    example: np.ndarray  # (M,) int
    teacher: np.ndarray  # (M,) int
    label: np.ndarray  # (M,) int, argmax class; ABSTAIN where the teacher's silence is itself an answer
    top: np.ndarray  # (M,) float, the max probability (1.0 for a hard vote, NaN for an abstention)
    n: int  # number of examples

    @property
    def answered(self) -> np.ndarray:
        return self.label != ABSTAIN  # (M,)


ABSTAIN = -1  # the label of an abstention kept as evidence


def long_from_probs(probs: np.ndarray, informative: np.ndarray | None = None) -> Long:
    """One row per label; with ``informative`` (T,) bool, an abstention of such a teacher is a row
    too (label ABSTAIN): when a one-sided rule stays silent is what tells its classes apart."""
    seen = ~np.isnan(probs[..., 0])  # (N, T)
    keep = seen | (informative[None, :] if informative is not None else False)  # (N, T)
    i, t = np.nonzero(keep)  # row-major, so already grouped by example
    rows = np.nan_to_num(probs[i, t], nan=0.0)  # (M, K)
    spoke = seen[i, t]  # (M,)
    label = np.where(spoke, rows.argmax(-1), ABSTAIN)
    top = np.where(spoke, rows.max(-1), np.nan)
    return Long(i, t, label, top, probs.shape[0])


def long_from_table(labels: LongLabels) -> Long:
    keep = labels.worker >= 0  # unknown workers (at predict time) carry no learned confusion
    order = np.argsort(labels.task[keep], kind="stable")
    return Long(
        labels.task[keep][order],
        labels.worker[keep][order],
        labels.label[keep][order],
        np.ones(int(keep.sum())),
        len(labels.tasks),
    )


def bin_edges(teacher: np.ndarray, top: np.ndarray, n_teachers: int, bins: int) -> list[np.ndarray]:
    """Per teacher, interior edges at the quantiles of its own max-probability.

    Quantiles (not fixed cut points) so that an uncalibrated teacher squeezed into [0.55, 0.7]
    still gets ``bins`` informative bins. Ties collapse edges: hard 0/1 votes get a single bin.
    """
    edges = []
    levels = np.arange(1, bins) / bins
    for t in range(n_teachers):
        v = top[(teacher == t) & ~np.isnan(top)]
        if bins == 1 or v.size == 0:
            edges.append(np.empty(0))
            continue
        e = np.unique(np.quantile(v, levels))
        # an edge at/above the max (or below the min) would leave an empty bin
        edges.append(e[(e >= v.min()) & (e < v.max())])
    return edges


def apply_bins(teacher: np.ndarray, top: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    b = np.zeros(teacher.shape, dtype=np.int64)
    for t, e in enumerate(edges):
        sel = (teacher == t) & ~np.isnan(top)
        if e.size and sel.any():
            b[sel] = np.searchsorted(e, top[sel], side="left")  # bin j holds edge[j-1] < v <= edge[j]
    return b


def answer_codes(long: Long, edges: list[np.ndarray], stride: int, n_classes: int) -> np.ndarray:
    """Each label's answer index: class * stride + confidence bin; an abstention is the last answer."""
    answer = long.label * stride + apply_bins(long.teacher, long.top, edges)  # (M,)
    return np.where(long.answered, answer, n_classes * stride)


@dataclass
class Answers:
    """Padded per-example answer lists: codes[i, l] = teacher * A + answer, valid where mask; clamp
    (N, K) is 0 for classes an example may have and -inf for the others (observed gold)."""

    codes: torch.Tensor  # (N, L) int64
    mask: torch.Tensor  # (N, L) bool
    clamp: torch.Tensor  # (N, K) float

    @property
    def n(self) -> int:
        return self.codes.shape[0]

    def rows(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.codes[idx], self.mask[idx], self.clamp[idx]


def gold_clamp(gold: np.ndarray | None, n: int, k: int, dtype, device) -> torch.Tensor:
    """(N, K) log-indicator of the observed class: adding it to an example's log-likelihood makes
    the enumerated z exactly the observed one (semi-supervised Dawid-Skene), -1 = unobserved."""
    clamp = torch.zeros((n, k), dtype=dtype, device=device)
    if gold is not None:
        rows = np.nonzero(gold >= 0)[0]
        clamp[rows] = float("-inf")
        clamp[rows, gold[rows]] = 0.0
    return clamp


def pad_answers(long: Long, answer: np.ndarray, n_answers: int, device, clamp: torch.Tensor) -> Answers:
    """Dense (N, L) layout with L = most labels on one example: for T teachers of a benchmark
    L = T, for a sparse crowd (3 of 176 workers per task) L = 3, so no N x T blow-up."""
    n = long.n
    counts = np.bincount(long.example, minlength=n)  # (N,)
    width = max(int(counts.max()) if counts.size else 0, 1)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(long.example.size) - start[long.example]
    codes = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    codes[long.example, pos] = long.teacher * n_answers + answer
    mask[long.example, pos] = True
    return Answers(torch.as_tensor(codes, device=device), torch.as_tensor(mask, device=device), clamp)
