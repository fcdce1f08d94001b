"""Lexicon teachers for binary sentiment: fixed word lists, no training.

Each scores a text, maps the score to p(positive), and (with ``abstain_on_neutral``) abstains where
the score is exactly 0 (no sentiment word found): the aggregator then sees a missing entry, not a
coin flip.
"""
from __future__ import annotations

import numpy as np

from weaks2strong.tasks import Task
from weaks2strong.teachers.base import TeacherError


class _Lexicon:
    name = "lexicon"
    split_independent = True  # a fixed word list: an example's answer is the same in every split

    def __init__(self, abstain_on_neutral: bool = True):
        self.abstain_on_neutral = abstain_on_neutral

    def fit(self, task: Task) -> None:
        if task.num_classes != 2:
            raise TeacherError(f"teacher '{self.name}' scores binary sentiment; task '{task.name}' "
                               f"has {task.num_classes} classes")

    def scores(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def positive(self, scores: np.ndarray) -> np.ndarray:
        return (1.0 + scores) / 2.0  # for scores in [-1, 1]

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        scores = self.scores(task.texts(split))  # (N,)
        positive = self.positive(scores)
        probs = np.stack([1.0 - positive, positive], axis=1)  # (N, 2): [negative, positive]
        if self.abstain_on_neutral:
            probs[scores == 0.0] = np.nan
        return probs


class Vader(_Lexicon):
    """VADER's compound score in [-1, 1] (Hutto & Gilbert 2014)."""

    name = "vader"

    def scores(self, texts):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        analyzer = SentimentIntensityAnalyzer()
        return np.array([analyzer.polarity_scores(t)["compound"] for t in texts])


class Afinn(_Lexicon):
    """AFINN's summed word valences (Nielsen 2011), squashed by a logistic with ``scale``."""

    name = "afinn"

    def __init__(self, abstain_on_neutral: bool = True, scale: float = 3.0):
        super().__init__(abstain_on_neutral)
        self.scale = scale

    def scores(self, texts):
        from afinn import Afinn as AfinnScorer

        scorer = AfinnScorer()
        return np.array([scorer.score(t) for t in texts], dtype=np.float64)

    def positive(self, scores):
        return 1.0 / (1.0 + np.exp(-scores / self.scale))


class TextBlob(_Lexicon):
    """TextBlob's pattern-lexicon polarity in [-1, 1]."""

    name = "textblob"

    def scores(self, texts):
        from textblob import TextBlob as Blob

        return np.array([Blob(t).sentiment.polarity for t in texts])
