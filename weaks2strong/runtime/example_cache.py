"""Values computed once per example, whatever split it lands in: a teacher's labels, an encoder's features.

A teacher that does not learn from the split (a lexicon, keyword rules, a zero-shot prompted LM)
gives an example the same answer under every split seed, and a frozen encoder gives it the same
features; so these are cached by (producer key, example content hash), not by the split's hash.
A new split seed then computes only the examples no earlier seed saw. A shard never changes once
written, so a process reads each one once (the instances of a folder share what was read) and, on
every lookup, only the shards written since, by it or by another process.

Layout: ``<store root>/examples/<namespace>/<shard>-<checksum>.parquet``, each shard an atomically
written table (``example``: the content hash; ``value``: a fixed-width float list). Shards are only
ever added, so a killed run loses at most the shard it was writing and concurrent writers never
clash; a reader takes the union (the same example in two shards has the same value by construction).
The name carries the xxh3-128 of the shard's bytes, checked when a process first reads it: a shard
changed on disk since is skipped with one warning naming it, so its examples are computed again
(into a shard of the same name, when the bytes come out the same). A shard named without a
checksum (written before them) is read unverified; ``w2s-cache verify`` checks every shard.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from weaks2strong.runtime.artifacts import file_digest, stable_hash

# the columns of a task row that are not its content: the id names the row in one source file, the
# label is gold (an example's teacher answers and features do not depend on either)
NOT_CONTENT = ("example_id", "label")
_READ: dict[str, tuple[dict[str, np.ndarray], set[str]]] = {}
log = logging.getLogger(__name__)


def example_hashes(df: pd.DataFrame) -> list[str]:
    """One content hash per row: every column but ``example_id`` and ``label``, by name and value."""
    fields = sorted(c for c in df.columns if c not in NOT_CONTENT)
    rows = df[fields].astype(str).itertuples(index=False, name=None)
    return [hashlib.sha256(json.dumps([fields, list(r)]).encode()).hexdigest()[:24] for r in rows]


def shard_problem(shard: Path) -> str | None:
    """Why a shard cannot be trusted (its bytes no longer match the checksum in its name), or None."""
    _, _, recorded = shard.stem.partition("-")
    if not recorded:
        return None  # written before checksums: read unverified
    try:
        actual = file_digest(shard)
    except OSError as err:
        return f"{shard} cannot be read ({err.strerror})"
    return None if actual == recorded else f"{shard} does not match the checksum in its name"


class ExampleCache:
    """A per-example value table of fixed ``width`` under ``root/examples/<namespace>``."""

    def __init__(self, root: str | Path, namespace: str, width: int):
        self.folder = Path(root) / "examples" / namespace
        self.width = int(width)
        # shared by every instance of this folder in the process: (values by example, shard files read)
        self._known, self._read = _READ.setdefault(str(self.folder.resolve()), ({}, set()))

    def _load(self) -> dict[str, np.ndarray]:
        for shard in sorted(self.folder.glob("*.parquet")):
            if shard.name in self._read:
                continue
            self._read.add(shard.name)  # read, or found bad, once per process
            problem = shard_problem(shard)
            if problem:
                log.warning("example cache: %s; skipped, its examples are computed again", problem)
                continue
            table = pd.read_parquet(shard)
            for key, value in zip(table["example"], table["value"]):
                self._known[key] = np.asarray(value, dtype=np.float64)
        return self._known

    def get(self, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(values (n, width) with NaN rows where absent, found (n,) bool)."""
        known = self._load()
        out = np.full((len(hashes), self.width), np.nan)
        found = np.zeros(len(hashes), dtype=bool)
        for i, h in enumerate(hashes):
            if h in known:
                out[i], found[i] = known[h], True
        return out, found

    def put(self, hashes: list[str], values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(hashes), self.width):
            raise ValueError(f"expected ({len(hashes)}, {self.width}) values, got {values.shape}")
        if not len(hashes):
            return
        table = pd.DataFrame({"example": hashes, "value": list(values)})
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{stable_hash(hashes)}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            table.to_parquet(tmp, index=False)
            shard = self.folder / f"{stable_hash(hashes)}-{file_digest(tmp)}.parquet"
            os.replace(tmp, shard)
        finally:
            tmp.unlink(missing_ok=True)
        self._known.update(zip(hashes, values))
        self._read.add(shard.name)

    def fill(self, df: pd.DataFrame, compute: Callable[[pd.DataFrame], np.ndarray]) -> tuple[np.ndarray, int]:
        """Values for every row of ``df``: cached ones read, the others computed by ``compute`` on just
        those rows (in their order) and stored. Returns (values (N, width), how many were computed)."""
        hashes = example_hashes(df)
        values, found = self.get(hashes)
        missing = np.flatnonzero(~found)
        # a row repeated in df (same content) is computed once
        first = {}
        for i in missing:
            first.setdefault(hashes[i], i)
        todo = np.array(sorted(first.values()), dtype=np.int64)
        if len(todo):
            fresh = np.asarray(compute(df.iloc[todo].reset_index(drop=True)), dtype=np.float64)
            self.put([hashes[i] for i in todo], fresh)
            values, _ = self.get(hashes)
        return values, len(todo)
