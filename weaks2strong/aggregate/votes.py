"""Votes as a sparse list: one entry per (row, source) answer that exists.

A label model's cost should grow with the number of votes, not rows x sources: a WRENCH rule set
leaves most cells empty (SMS: 0.5 votes per row over 73 rules), and a 10^6 x 100 matrix at 2%
density is 2 x 10^6 votes but 10^8 cells. ``Votes`` is that list, built from any of the shapes the
framework meets: a dense (N, T, K) probability array with NaN rows for abstentions (the teachers'
artifact), an (N, T) integer matrix with -1 for abstain (Snorkel's and WRENCH's L), or a crowd
table's codes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import AggregatorError, check_probs


@dataclass(frozen=True)
class Votes:
    row: np.ndarray  # (M,) int, the example
    source: np.ndarray  # (M,) int, the teacher / rule / worker
    label: np.ndarray  # (M,) int, the answered class (argmax of a soft answer)
    top: np.ndarray  # (M,) float, the answer's max probability (1.0 for a hard vote)
    n_rows: int
    n_sources: int
    n_classes: int
    source_names: tuple = ()

    @property
    def n_votes(self) -> int:
        return len(self.row)

    @property
    def names(self) -> list[str]:
        return list(self.source_names) or [f"source_{j}" for j in range(self.n_sources)]

    def votes_per_row(self) -> np.ndarray:
        return np.bincount(self.row, minlength=self.n_rows)  # (N,)

    def select_rows(self, keep: np.ndarray) -> Votes:
        """The votes of the rows where ``keep`` (N,) is true, rows renumbered in order."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1  # (N,)
        m = keep[self.row]
        return Votes(new_index[self.row[m]], self.source[m], self.label[m], self.top[m], int(keep.sum()),
                     self.n_sources, self.n_classes, self.source_names)

    def dense(self) -> np.ndarray:
        """(N, T) int matrix, -1 where a source did not vote (its last vote where it voted twice)."""
        out = np.full((self.n_rows, self.n_sources), -1, dtype=np.int64)
        out[self.row, self.source] = self.label
        return out

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_matrix(cls, matrix, n_classes: int | None = None, source_names=None, where: str = "vote matrix") -> Votes:
        """An (N, T) int matrix with -1 for an abstention (Snorkel's L)."""
        m = np.asarray(matrix)
        if m.ndim != 2:
            raise AggregatorError(f"{where}: expected an (examples, sources) matrix, got shape {m.shape}")
        if m.size and not np.issubdtype(m.dtype, np.integer):
            if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
                raise AggregatorError(f"{where}: votes must be integers (-1 = abstain)")
            m = m.astype(np.int64)
        k = int(n_classes) if n_classes is not None else max(int(m.max(initial=-1)) + 1, 2)
        bad = (m < -1) | (m >= k)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise AggregatorError(f"{where}: row {i}, source {j}: vote {m[i, j]} outside [-1, {k - 1}]")
        i, j = np.nonzero(m >= 0)
        return cls(i.astype(np.int64), j.astype(np.int64), m[i, j].astype(np.int64), np.ones(len(i)),
                   m.shape[0], m.shape[1], k, tuple(source_names or ()))

    @classmethod
    def from_probs(cls, probs, source_names=None) -> Votes:
        """A dense (N, T, K) probability array, whole NaN rows for abstentions (checked)."""
        probs = check_probs(probs, source_names)
        seen = ~np.isnan(probs[..., 0])  # (N, T)
        i, j = np.nonzero(seen)
        rows = probs[i, j]  # (M, K)
        return cls(i.astype(np.int64), j.astype(np.int64), rows.argmax(-1).astype(np.int64), rows.max(-1),
                   probs.shape[0], probs.shape[1], probs.shape[2], tuple(source_names or ()))

    @classmethod
    def from_codes(cls, row, source, label, n_rows: int, n_sources: int, n_classes: int, source_names=None) -> Votes:
        """Integer codes of a long (task, worker, label) table (crowd.LongLabels)."""
        row, source, label = (np.asarray(a, dtype=np.int64) for a in (row, source, label))
        keep = source >= 0  # unknown workers (at predict time) carry no learned reliability
        for name, values, bound in (("row", row, n_rows), ("source", source[keep], n_sources),
                                    ("label", label, n_classes)):
            if len(values) and (values.min() < 0 or values.max() >= bound):
                raise AggregatorError(f"vote list: {name} index outside [0, {bound - 1}]")
        return cls(row[keep], source[keep], label[keep], np.ones(int(keep.sum())), int(n_rows), int(n_sources),
                   int(n_classes), tuple(source_names or ()))


def as_votes(data, source_names=None, n_classes: int | None = None) -> Votes:
    """Whatever a label model was handed, as Votes: Votes, (N, T, K) probabilities or an (N, T) matrix."""
    if isinstance(data, Votes):
        return data
    arr = np.asarray(data)
    if arr.ndim == 3:
        return Votes.from_probs(arr, source_names)
    if arr.ndim == 2:
        return Votes.from_matrix(arr, n_classes, source_names)
    raise AggregatorError("expected Votes, an (N, T, K) probability array or an (N, T) vote matrix; "
                          f"got shape {arr.shape}")
