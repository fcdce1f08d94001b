"""A keyword-lexicon teacher for topic tasks: hand-written word lists per class, no training.

Each class has a list of keywords (single words or phrases), matched case-insensitively as whole
words. Per example, ``hits[k]`` counts the matches of class k's keywords; with no hit at all the
teacher abstains (a NaN row: the aggregator sees a missing entry, not a guess). Otherwise

    p(k | x) = (hits[k] + smoothing) / (sum_j hits[j] + K * smoothing)

add-``smoothing`` (Laplace-style) so that one hit is confident but not one-hot: with K = 4 and the
default smoothing 0.1, a single hit gives 1.1 / 1.4 = 0.79, two hits on one class 0.875, and a tie
between two classes splits the mass between them.
"""
from __future__ import annotations

import re

import numpy as np

from weaks2strong.tasks import Task
from weaks2strong.teachers.base import TeacherError


class KeywordLexicon:
    name = "keywords"
    split_independent = True  # fixed keywords: an example's answer is the same in every split

    def __init__(self, keywords: dict[str, list[str]], smoothing: float = 0.1):
        if not keywords:
            raise TeacherError(f"teacher '{self.name}': keywords is empty; give a list of words per class")
        if smoothing <= 0:
            raise TeacherError(f"teacher '{self.name}': smoothing must be positive, got {smoothing}")
        self.keywords = {str(c): [str(w) for w in words or []] for c, words in dict(keywords).items()}
        self.smoothing = float(smoothing)
        # one alternation per class; \b on both sides = whole words (a phrase matches as written)
        self.patterns = {
            c: re.compile(r"\b(?:" + "|".join(re.escape(w.strip()) for w in words if w.strip()) + r")\b",
                          re.IGNORECASE)
            for c, words in self.keywords.items() if any(w.strip() for w in words)
        }

    def _check(self, task: Task) -> None:
        for cls in self.keywords:
            if cls not in task.classes:
                raise TeacherError(f"teacher '{self.name}': keywords.{cls} is not a class of task '{task.name}' "
                                   f"(classes: {', '.join(task.classes)})")

    def fit(self, task: Task) -> None:
        """Nothing to learn; only checks that every keyword class is one of the task's classes."""
        self._check(task)

    def hits(self, texts: list[str], classes: list[str]) -> np.ndarray:
        """(N, K) keyword match counts."""
        counts = np.zeros((len(texts), len(classes)))
        for k, cls in enumerate(classes):
            if cls in self.patterns:
                counts[:, k] = [len(self.patterns[cls].findall(t)) for t in texts]
        return counts

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        self._check(task)
        hits = self.hits(task.texts(split), task.classes)  # (N, K)
        probs = (hits + self.smoothing) / (hits.sum(1, keepdims=True) + task.num_classes * self.smoothing)
        probs[hits.sum(1) == 0] = np.nan  # no keyword: abstain
        return probs
