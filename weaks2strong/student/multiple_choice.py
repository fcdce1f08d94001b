"""The multiple-choice recipe: a pretrained encoder scores each (context + question, option) pair,
and the scores of a row are its logits over the options (``EncoderMultipleChoice``); fine-tuned on
the aggregated soft targets of w2s_train (the student) or on gold (the ceiling), validated on ``val``.

The same signature and config slots as ``classify``: ``student.model`` and ``student.data`` (a
``ChoicesDataModule``) as partials, ``student.net`` as keyword arguments (``conf/student/minilm_mc.yaml``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from weaks2strong.models.multiple_choice import EncoderMultipleChoice
from weaks2strong.student.base import StudentParts
from weaks2strong.tasks import Task


def multiple_choice(task: Task, soft: np.ndarray, weights: np.ndarray, encoder_path: str, model: Callable,
                    data: Callable, net: dict, seed: int = 0) -> StudentParts:
    """soft: (N, C) targets for w2s_train's rows (C = the task's classes, one per option), weights: (N,)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_path, trust_remote_code=net.get("trust_remote_code", False))
    module = model(net=EncoderMultipleChoice(encoder_path, **net), num_classes=task.num_classes)
    train_firsts, train_options = task.choice_inputs("w2s_train")
    val_firsts, val_options = task.choice_inputs("val")
    datamodule = data(tokenizer=tokenizer, train_firsts=train_firsts, train_options=train_options, train_targets=soft,
                      train_weights=weights, val_firsts=val_firsts, val_options=val_options,
                      val_labels=task.labels("val"), seed=seed)
    return StudentParts(module, datamodule, lambda t, split: datamodule.encode_for_predict(*t.choice_inputs(split)))
