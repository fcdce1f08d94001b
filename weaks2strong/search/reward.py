"""The reward of sentiment-controlled continuation (Zhou et al. 2024, §4.1): P(target sentiment) of
the opening plus its continuation, from a classifier trained on gold labels of another dataset
(SST-2 sentences), so it shares neither data nor model with the guide pair it judges."""
from __future__ import annotations

import numpy as np

from weaks2strong.tasks.registry import load_task
from weaks2strong.teachers.probe import EncoderProbe


class SentimentReward:
    """A frozen encoder (``model``) with a logistic-regression head fitted on ``train_size`` gold
    sentences of ``source`` (a classification task: negative = 0, positive = 1)."""

    def __init__(self, model: str = "minilm-l6", source: str = "sst2", train_size: int = 2000, target_label: int = 1,
                 mirror: str | None = None, models_dir: str | None = None, seed: int = 0, progress: bool = True):
        self.source, self.train_size, self.target_label, self.mirror = source, train_size, target_label, mirror
        self.seed = seed
        self.probe = EncoderProbe(model=model, models_dir=models_dir, progress=progress, seed=seed)

    def fit(self) -> SentimentReward:
        sizes = {"weak_train": self.train_size, "w2s_train": 1, "val": 1, "test": 300}
        task = load_task(self.source, sizes=sizes, mirror=self.mirror, split_seed=self.seed)
        self.probe.fit(task)  # gold labels of the source's weak_train
        self.accuracy_ = float(np.mean(self.probe.head.predict(self.probe.embed(task.texts("test"), "reward: test"))
                                       == task.labels("test")))
        return self

    def __call__(self, texts: list[str]) -> np.ndarray:
        """P(target sentiment) of each text (N,)."""
        probs = self.probe.head.predict_proba(self.probe.embed(texts, "reward"))  # (N, 2)
        return probs[:, list(self.probe.head.classes_).index(self.target_label)]
