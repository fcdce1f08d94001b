"""Classic sparse-feature teachers trained on the gold ``weak_train`` split."""
from __future__ import annotations

import numpy as np

from weaks2strong.tasks import Task


class TfidfLogReg:
    """TF-IDF n-grams + logistic regression."""

    def __init__(self, max_features: int = 50_000, ngram_max: int = 2, C: float = 1.0, seed: int = 0):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.model = make_pipeline(
            TfidfVectorizer(max_features=max_features, ngram_range=(1, ngram_max), sublinear_tf=True),
            LogisticRegression(C=C, max_iter=2000, random_state=seed),
        )

    def fit(self, task: Task) -> None:
        self.model.fit(task.texts("weak_train"), task.labels("weak_train"))
        self.num_classes = task.num_classes

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        probs = np.zeros((len(task.split(split)), task.num_classes))
        # a class missing from weak_train keeps probability 0 rather than shifting the columns
        probs[:, self.model.classes_] = self.model.predict_proba(task.texts(split))
        return probs


class NaiveBayes(TfidfLogReg):
    """Word counts + multinomial naive Bayes."""

    def __init__(self, max_features: int = 50_000, ngram_max: int = 1, alpha: float = 1.0):
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.naive_bayes import MultinomialNB
        from sklearn.pipeline import make_pipeline

        self.model = make_pipeline(CountVectorizer(max_features=max_features, ngram_range=(1, ngram_max)),
                                   MultinomialNB(alpha=alpha))
