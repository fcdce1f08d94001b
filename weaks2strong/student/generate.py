"""The generation recipe: a pretrained causal LM (Gemma-3-270M by default) trained by
confidence-weighted teacher forcing on the candidate posterior of w2s_train (the student) or on
the gold answers (the ceiling), validated by the gold answers' NLL on ``val``.

The module and the data come in from config as partials (``student.model``, ``student.data``); the
network keywords (``student.net``) go to the loader, so no config object reaches model code.
"""
from __future__ import annotations

from collections.abc import Callable

from weaks2strong.models.causal_lm import CandidateRow, load_causal_lm


def teacher_forcing(train_rows: list[CandidateRow], val_rows: list[CandidateRow], lm_path: str, model: Callable,
                    data: Callable, seed: int = 0, trust_remote_code: bool = False) -> dict:
    """{"module", "data", "tokenizer"}: the LightningModule, its DataModule, and the tokenizer that
    evaluate answers with."""
    tok, lm = load_causal_lm(lm_path, trust_remote_code)
    return {"module": model(lm=lm), "data": data(tok=tok, train_rows=train_rows, val_rows=val_rows, seed=seed),
            "tokenizer": tok}
