"""Lexicon teachers for sentiment: fixed word lists, no training (Hutto & Gilbert 2014, VADER)."""
from __future__ import annotations

import numpy as np

from weaks2strong.tasks import Task
from weaks2strong.teachers.base import TeacherError


class Vader:
    """VADER's compound score c in [-1, 1] read as p(positive) = (1 + c) / 2.

    With ``abstain_on_neutral`` a score of exactly 0 (no sentiment word found) is an abstention,
    not a coin flip: the aggregator then sees a missing entry.
    """

    def __init__(self, abstain_on_neutral: bool = True):
        self.abstain_on_neutral = abstain_on_neutral

    def fit(self, task: Task) -> None:
        if task.num_classes != 2:
            raise TeacherError(f"teacher 'vader' scores binary sentiment; task '{task.name}' "
                               f"has {task.num_classes} classes")

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()
        compound = np.array([analyzer.polarity_scores(t)["compound"] for t in task.texts(split)])
        positive = (1.0 + compound) / 2.0
        probs = np.stack([1.0 - positive, positive], axis=1)  # (N, 2): [negative, positive]
        if self.abstain_on_neutral:
            probs[compound == 0.0] = np.nan
        return probs
