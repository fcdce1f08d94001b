"""A real TF-IDF teacher that trips if it is asked about a test row before the student exists:
the proof that no stage before evaluate reaches the test split (see test_pipeline.py)."""
from __future__ import annotations

from pathlib import Path

from weaks2strong.teachers.classic import TfidfLogReg

SENTINEL = "SENTINEL-TEST-ROW"


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
