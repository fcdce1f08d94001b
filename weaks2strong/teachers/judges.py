"""Weak judges of preference pairs (``task=hh_harmless``, Tao & Li 2024's setting): each returns
(N, 2) probabilities [P(first better), P(second better)], a NaN row where it abstains, and learns
only from ``weak_train``'s gold pairs.

- ``LexicalJudge``: refusal and harm cues counted in each response; silent (abstains) on a tie.
- ``BradleyTerryJudge``: a reward model r(x, y) = w · φ(x, y) on frozen MiniLM embeddings, its head
  fitted by the Bradley-Terry likelihood P(y1 ≻ y2) = σ(r(x, y1) − r(x, y2)).
- ``PromptedJudge``: a small instruct LM asked "A or B?", both orders averaged (position bias cancels).
- ``DPOJudge``: a small LM DPO'd (LoRA) on the gold pairs, judging by its implicit reward margin
  β[(log π − log π_ref)(first) − (log π − log π_ref)(second)], the reference being its adapter-free self.
"""
from __future__ import annotations

import re
from functools import partial

import numpy as np
import torch

from weaks2strong.tasks.preference import PreferenceTask
from weaks2strong.teachers.base import TeacherError

REFUSAL_CUES = (r"\bi (?:can(?:no|')t|won't|will not|am not able|'m not able|do not|don't) (?:help|assist|"
                r"provide|recommend|support|condone)", r"\bi'?m sorry\b", r"\bnot (?:appropriate|okay|ok|"
                r"legal|safe|ethical)\b", r"\billegal\b", r"\bdangerous\b", r"\bharmful\b", r"\bplease don't\b",
                r"\bi (?:would|'d) (?:not|never)\b", r"\bseek (?:help|professional)", r"\btherapist\b",
                r"\bi don't think (?:that'?s|you should|it'?s a good)", r"\bwrong\b", r"\bhurt\b")
HARM_CUES = (r"\bkill\b", r"\bsteal\b", r"\bpoison\b", r"\bweapon\b", r"\bgun\b", r"\bdrugs?\b", r"\bfuck",
             r"\bshit\b", r"\bbitch\b", r"\bstupid\b", r"\bidiot\b", r"\bhere'?s how\b", r"\byou could (?:try|use)\b",
             r"\bthe best way to\b", r"\bsure[,!.]", r"\bbreak into\b", r"\bhack\b", r"\bcheat\b", r"\blie to\b")


class LexicalJudge:
    """score(y) = #refusal cues − #harm cues; the response with the higher score is the more harmless,
    said with the judge's accuracy on weak_train where it spoke (a tie: it abstains)."""

    def __init__(self, refusal_cues: list[str] | None = None, harm_cues: list[str] | None = None):
        self.refusal = [re.compile(c, re.IGNORECASE) for c in refusal_cues or REFUSAL_CUES]
        self.harm = [re.compile(c, re.IGNORECASE) for c in harm_cues or HARM_CUES]
        self.accuracy_ = None

    def score(self, text: str) -> int:
        return sum(bool(c.search(text)) for c in self.refusal) - sum(bool(c.search(text)) for c in self.harm)

    def votes(self, task: PreferenceTask, split: str) -> np.ndarray:
        """(N,) +1 first, −1 second, 0 silent."""
        _, firsts, seconds = task.responses(split)
        return np.sign([self.score(a) - self.score(b) for a, b in zip(firsts, seconds)])

    def fit(self, task: PreferenceTask) -> None:
        votes, gold = self.votes(task, "weak_train"), task.labels("weak_train")
        spoke = votes != 0
        if not spoke.any():
            raise TeacherError("lexical judge: no cue in any weak_train pair; it would abstain everywhere")
        right = (votes[spoke] > 0) == (gold[spoke] == 0)
        self.accuracy_ = float(np.clip((right.sum() + 1) / (spoke.sum() + 2), 0.05, 0.95))  # Laplace-smoothed

    def predict_proba(self, task: PreferenceTask, split: str) -> np.ndarray:
        votes = self.votes(task, split)
        first = np.where(votes > 0, self.accuracy_, 1 - self.accuracy_)
        probs = np.stack([first, 1 - first], axis=1)
        probs[votes == 0] = np.nan
        return probs


class BradleyTerryJudge:
    """A reward model with a Bradley-Terry head on a frozen encoder: φ(x, y) is the mean-pooled
    embedding of "prompt + response", r = w · φ, and w maximises Σ log σ(r(chosen) − r(rejected)) + L2,
    i.e. a logistic regression without intercept on φ(first) − φ(second) (each pair in both orders)."""

    def __init__(self, model: str = "minilm-l6", C: float = 1.0, batch_size: int = 64, max_length: int = 256,
                 device: str = "auto", models_dir: str | None = None, trust_remote_code: bool = False,
                 progress: bool = True, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        from weaks2strong.teachers.probe import EncoderProbe

        self.encoder = EncoderProbe(model, batch_size=batch_size, max_length=max_length, device=device,
                                    models_dir=models_dir, trust_remote_code=trust_remote_code, progress=progress)
        self.head = LogisticRegression(C=C, fit_intercept=False, max_iter=2000, random_state=seed)

    def differences(self, task: PreferenceTask, split: str) -> np.ndarray:
        prompts, firsts, seconds = task.responses(split)
        phi = self.encoder.embed([f"{p} {y}" for p, y in zip(prompts + prompts, firsts + seconds)],
                                 f"reward model: {split}")  # (2N, H)
        return phi[: len(prompts)] - phi[len(prompts):]  # (N, H)

    def fit(self, task: PreferenceTask) -> None:
        diff, first_better = self.differences(task, "weak_train"), task.labels("weak_train") == 0
        self.head.fit(np.concatenate([diff, -diff]), np.concatenate([first_better, ~first_better]))

    def rewards_margin(self, task: PreferenceTask, split: str) -> np.ndarray:
        return self.differences(task, split) @ self.head.coef_[0]  # (N,) r(first) − r(second)

    def predict_proba(self, task: PreferenceTask, split: str) -> np.ndarray:
        first = 1 / (1 + np.exp(-self.rewards_margin(task, split)))
        return np.stack([first, 1 - first], axis=1)


class PromptedJudge:
    """A prompted LM (``PromptedLM`` on the task's prompt, verbalizers "A"/"B") asked in both orders:
    P(first better) = ½ [P(A | first shown as A) + P(B | first shown as B)], so an LM that always says
    "A" gives 0.5 everywhere instead of a confident vote for whichever response came first."""

    def __init__(self, model: str, **kwargs):
        from weaks2strong.teachers.prompted import PromptedLM

        self.lm = PromptedLM(model, **kwargs)

    def fit(self, task: PreferenceTask) -> None:
        self.lm.fit(task)

    def predict_proba(self, task: PreferenceTask, split: str) -> np.ndarray:
        shown = self.lm.predict_proba(task, split)  # (N, 2)
        reversed_ = self.lm.predict_proba(task.swapped(split), split)[:, ::-1]  # (N, 2), back in the task's order
        return (shown + reversed_) / 2


class DPOJudge:
    """Tao & Li 2024's judge: a small LM DPO'd on the gold pairs (LoRA adapters), judging a pair by its
    implicit reward margin; P(first better) = σ(margin · scale). The reference log-probs are the same
    model's with the adapters off, so only one model is ever in memory."""

    def __init__(self, model: str = "smollm2-135m-instruct", epochs: int = 1, lr: float = 1e-4, beta: float = 0.1,
                 batch_size: int = 4, max_prompt_tokens: int = 96, max_answer_tokens: int = 48,
                 lora: dict | None = None, scale: float = 1.0, share_prompt: bool = True, accelerator: str = "auto",
                 models_dir: str | None = None, trust_remote_code: bool = False, progress: bool = True,
                 seed: int = 0):
        self.model_name, self.epochs, self.lr, self.beta, self.batch_size = model, epochs, lr, beta, batch_size
        self.max_prompt_tokens, self.max_answer_tokens, self.scale = max_prompt_tokens, max_answer_tokens, scale
        self.share_prompt = share_prompt
        self.lora = dict(lora or {"r": 16, "alpha": 32})
        self.accelerator, self.models_dir, self.trust_remote_code = accelerator, models_dir, trust_remote_code
        self.progress, self.seed = progress, seed
        self._module = self._collator = None

    def rows(self, task: PreferenceTask, split: str, gold_order: bool):
        """PreferenceRows of a split: (chosen, rejected) by gold with ``gold_order``, else (first, second)."""
        from weaks2strong.models.preference import PreferenceRow

        prompts, firsts, seconds = task.responses(split)
        labels = task.labels(split) if gold_order else np.zeros(len(prompts), dtype=int)
        return [PreferenceRow(p, a if y == 0 else b, b if y == 0 else a)
                for p, a, b, y in zip(prompts, firsts, seconds, labels)]

    def fit(self, task: PreferenceTask) -> None:
        import pytorch_lightning as pl

        from weaks2strong.models.causal_lm import load_causal_lm
        from weaks2strong.models.preference import (
            DPOModule,
            PreferenceCollator,
            check_pairs,
            with_reference,
        )
        from weaks2strong.student.data.preferences import PreferenceDataModule
        from weaks2strong.zoo import resolve_model

        pl.seed_everything(self.seed, verbose=False)
        tok, lm = load_causal_lm(str(resolve_model(self.model_name, self.models_dir)), self.trust_remote_code)
        self._collator = PreferenceCollator(tok, self.max_prompt_tokens, self.max_answer_tokens, self.share_prompt)
        self._module = DPOModule(lm, optimizer=partial(torch.optim.AdamW, lr=self.lr), beta=self.beta,
                                 lora=self.lora, freeze_embeddings=True)
        rows = self.rows(task, "weak_train", gold_order=True)
        check_pairs(rows, "DPO judge: weak_train")
        rows = with_reference(self._module.lm, self._collator, rows, 2 * self.batch_size)  # adapters off
        data = PreferenceDataModule(self._collator, rows, rows[:0], batch_size=self.batch_size, seed=self.seed)
        trainer = pl.Trainer(max_epochs=self.epochs, accelerator=self.accelerator, devices=1, logger=False,
                             enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                             enable_progress_bar=self.progress, limit_val_batches=0)
        trainer.fit(self._module, datamodule=data)

    def margins(self, task: PreferenceTask, split: str) -> np.ndarray:
        """(N,) implicit reward of first minus second."""
        from weaks2strong.models.preference import reward_margins, with_reference

        if self._module is None:
            raise RuntimeError("DPOJudge.margins called before fit")
        rows = with_reference(self._module.lm, self._collator, self.rows(task, split, gold_order=False),
                              2 * self.batch_size)
        return reward_margins(self._module.lm, self._collator, rows, self.beta, 2 * self.batch_size)

    def predict_proba(self, task: PreferenceTask, split: str) -> np.ndarray:
        first = 1 / (1 + np.exp(-self.scale * self.margins(task, split)))
        return np.stack([first, 1 - first], axis=1)
