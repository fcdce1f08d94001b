"""Tripwires for the sealed test split (see test_tripwire.py and test_pipeline.py).

- ``TestSplitTripwire``: a real TF-IDF teacher that trips if it is asked about a sentinel test row
  before the student exists.
- ``watched_task``: a task target for Hydra (``task._target_=tripwire.watched_task
  +task.loader=<the real loader> +task.watch=<folder>``): the real loader's task, whose unsealed
  test split logs every read in ``READS``; the first read also lists every file under ``watch``
  then, so a test can tell which artifacts were written before evaluate first read a test row.
- ``leaks``: which of those files hold a sentinel or a test example id.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

import pandas as pd
from hydra.utils import get_method

from weaks2strong.tasks.generation import normalize_answer
from weaks2strong.teachers.classic import TfidfLogReg

SENTINEL = "SENTINEL-TEST-ROW"
# how a sentinel can appear in an artifact: as written, or as an answer is normalised ("sentineltestrow")
MARKS = (SENTINEL.lower(), normalize_answer(SENTINEL))
READS: list[dict] = []  # one entry per read of an unsealed test split: time, caller, files (first read only)


class TestSplitTripwire(TfidfLogReg):
    def __init__(self, cache_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.cache_dir = Path(cache_dir)
        self.calls: list[str] = []

    def predict_proba(self, task, split):
        texts = task.texts(split)
        student_done = any((self.cache_dir / "student").glob("*/manifest.json"))
        if any(SENTINEL in t for t in texts) and not student_done:
            raise AssertionError(f"a test row reached the teacher on '{split}' before the student was trained")
        return super().predict_proba(task, split)


class WatchedReads:
    """Mixed into a task's class: each read of the unsealed test split is logged in ``READS``."""
    watch: Path

    def split(self, name: str):
        if name == "test" and not self.sealed:
            files = None if READS else {p for p in self.watch.rglob("*") if p.is_file()}
            READS.append({"time": time.time(), "caller": "".join(traceback.format_stack(limit=8)[:-1]),
                          "files": files})
        return super().split(name)


def watched_task(loader: str, watch: str, **kwargs):
    """The task ``loader`` builds from ``kwargs``, watched: its class gains ``WatchedReads`` (the
    sealed copy that the stages receive keeps the class, and holds no test row to read)."""
    task = get_method(loader)(**kwargs)
    task.__class__ = type(f"Watched{type(task).__name__}", (WatchedReads, type(task)), {"watch": Path(watch)})
    return task


def strings(path: Path) -> list[str] | None:
    """Every string a file holds: a parquet table's cells and column names, a JSON file's keys and
    values; None for other files (searched as bytes)."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        # every non-numeric column: object, pandas' str dtype, lists (a candidate pool) exploded
        cells = [str(v) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
                 for v in frame[c].explode().dropna()]
        return [*map(str, frame.columns), *cells]
    if path.suffix == ".json":
        found: list[str] = []

        def walk(value):
            if isinstance(value, dict):
                found.extend(map(str, value))
                value = list(value.values())
            if isinstance(value, list):
                for v in value:
                    walk(v)
            elif isinstance(value, str):
                found.append(value)

        walk(json.loads(path.read_text(encoding="utf-8")))
        return found
    return None


def leaks(files, test_ids: set[str]) -> list[str]:
    """'<file>: <what>' for each file that holds a sentinel (any case, or normalised) or a test example id."""
    out = []
    for path in sorted(files):
        if not path.is_file():
            continue
        found = strings(path)
        if found is None:
            text = path.read_bytes().decode("latin-1").lower()
            hits = [m for m in MARKS if m in text]
        else:
            hits = [s for s in found if s in test_ids or any(m in s.lower() for m in MARKS)]
        if hits:
            out.append(f"{path}: {hits[0][:80]!r}")
    return out


def artifact_dirs(listing) -> set[Path]:
    """Every folder that a run's artifacts.json names (nested dicts of paths)."""
    if isinstance(listing, dict):
        return set().union(*map(artifact_dirs, listing.values()))
    return {Path(listing)}


def expected_pgr(metrics: dict, split: str) -> dict[str, float]:
    """A classification run's PGR on ``split`` as its own accuracies define it: against the teacher
    best on val and against the aggregate; NaN where the ceiling does not clear the weak one."""
    acc = {name: metrics[name][split]["accuracy"] for name in ("student", "ceiling", "aggregate")}
    best = metrics["teachers"][metrics["best_teacher"]][split]["accuracy"]

    def gap(weak: float) -> float:
        return (acc["student"] - weak) / (acc["ceiling"] - weak) if acc["ceiling"] - weak > 1e-12 else math.nan

    return {"vs_best_teacher": gap(best), "vs_aggregate": gap(acc["aggregate"])}
