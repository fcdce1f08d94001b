"""A results ledger: one JSON line per finished cell of an experiment table, appended, never rewritten.

A cell (task, split seed, aggregator, student, ...) is keyed by a hash of its config and of the code
that computes it, so a table grows across sessions: a rerun skips the cells already written and
recomputes only those whose config or code changed. A line is written with one ``write`` on a file
opened for appending, so a killed run leaves at most one torn last line, which the reader skips.

The statistics the table prints are here too: a paired interval over seeds, PGR.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("%s:%d: a torn line (a killed run?) is skipped", self.path, lineno)
        return out

    def keys(self) -> set[str]:
        return {r["key"] for r in self.records()}

    def append(self, record: dict) -> None:
        if "key" not in record:
            raise ValueError("a ledger record needs a 'key'")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=True, default=_plain) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _plain(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def paired_interval(a, b, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of the paired differences a - b over seeds and its Student-t interval: (mean, low, high, n).
    With one pair the interval is (-inf, inf): one seed says nothing about the spread."""
    from scipy import stats

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)  # (S,)
    n = len(d)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(d.mean())
    if n < 2:
        return mean, -float("inf"), float("inf"), n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n


def pgr(student: float, weak: float, ceiling: float) -> float:
    """Performance gap recovered (Burns et al. 2023): (student - weak) / (ceiling - weak); NaN where
    the ceiling does not clear the weak supervisor (the gap is not there to recover)."""
    gap = ceiling - weak
    return float((student - weak) / gap) if gap > 0 else float("nan")
