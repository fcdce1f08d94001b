"""The classification recipe: a pretrained encoder with a K-way head, fine-tuned on the
aggregated soft targets of w2s_train (the student) or on its gold labels (the ceiling), validated
on ``val``.

Everything it builds comes in from config (``student.model``, ``student.data`` as partials;
``student.net`` as keyword arguments), so a new student changes YAML, not the pipeline.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from weaks2strong.models.classifier import EncoderClassifier
from weaks2strong.student.base import StudentParts
from weaks2strong.tasks import Task


def classify(task: Task, soft: np.ndarray, weights: np.ndarray, encoder_path: str, model: Callable,
             data: Callable, net: dict, seed: int = 0) -> StudentParts:
    """soft: (N, K) targets for w2s_train's rows, weights: (N,)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_path, trust_remote_code=net.get("trust_remote_code", False))
    module = model(net=EncoderClassifier(encoder_path, task.num_classes, **net), num_classes=task.num_classes)
    (train_texts, train_pairs), (val_texts, val_pairs) = task.encoder_inputs("w2s_train"), task.encoder_inputs("val")
    datamodule = data(tokenizer=tokenizer, train_texts=train_texts, train_targets=soft, train_weights=weights,
                      val_texts=val_texts, val_labels=task.labels("val"), train_pairs=train_pairs,
                      val_pairs=val_pairs, seed=seed)
    return StudentParts(module, datamodule, lambda t, split: datamodule.encode_for_predict(*t.encoder_inputs(split)))
