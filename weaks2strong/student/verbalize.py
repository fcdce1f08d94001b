"""The causal-LM recipe for classification tasks (``student=gemma3``): the LM reads the task's prompt
plus an answer cue and scores each class's verbalizer (``VerbalizerModule``); trained with weighted
soft cross-entropy over the verbalizers on the aggregate's targets (the student) or on gold (the
ceiling), validated on ``val``. Unlike the encoder students, it reads the whole prompt (a BoolQ
passage included) the way the prompted teachers do.

The same signature as ``classify``; ``student.encoder`` names the LM (a zoo name or a folder).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from weaks2strong.models.causal_lm import CandidateRow, load_causal_lm
from weaks2strong.student.base import StudentParts
from weaks2strong.tasks import Task

ANSWER_CUE = "\nAnswer:"


def verbalizer_prompts(task: Task, split: str, answer_cue: str = ANSWER_CUE) -> list[str]:
    """The prompts the student scores a split's verbalizers after (DPO's pairs read the same ones)."""
    return [prompt + answer_cue for prompt in task.prompts(split)]


def verbalize(task: Task, soft: np.ndarray, weights: np.ndarray, encoder_path: str, model: Callable,
              data: Callable, net: dict, seed: int = 0, answer_cue: str = ANSWER_CUE) -> StudentParts:
    """soft: (N, K) targets for w2s_train's rows, weights: (N,). The prompt of a row is the task's
    prompt followed by ``answer_cue``; the completion is " <verbalizer>\\n"."""
    tok, lm = load_causal_lm(encoder_path, trust_remote_code=net.get("trust_remote_code", False))
    module = model(lm=lm)
    k = task.num_classes

    def rows(t: Task, split: str, targets: np.ndarray | None = None,
             row_weights: np.ndarray | None = None) -> list[CandidateRow]:
        """A split's rows: its prompts and the K verbalizers, with ``targets`` (uniform when only
        predicting) and ``row_weights`` (ones unless training)."""
        n = len(t.split(split))
        targets = np.full((n, k), 1.0 / k) if targets is None else targets
        row_weights = np.ones(n) if row_weights is None else row_weights
        return [CandidateRow(prompt, list(t.verbalizers), [float(q) for q in target], float(w))
                for prompt, target, w in zip(verbalizer_prompts(t, split, answer_cue), targets, row_weights)]

    datamodule = data(tok=tok, train_rows=rows(task, "w2s_train", soft, weights),
                      val_rows=rows(task, "val", np.eye(k)[task.labels("val")]), seed=seed, every_candidate=True)
    return StudentParts(module, datamodule, lambda t, split: datamodule.loader(rows(t, split)), tokenizer=tok)
