"""A causal LM aligned by confidence-weighted DPO on preference pairs (``preference_loss``), and the
implicit-reward judge a DPO'd model is.

A pair is (prompt, chosen, rejected, p, w): p the probability that chosen is the better one (1 for
DPO, 1 − ε for cDPO, the weak ensemble's posterior otherwise), w its weight. Chosen and rejected go
through the model in one concatenated forward; only completion tokens count. The reference
model's log-probs are computed once before training (``reference_logprobs``) and travel with the
rows, so no reference model sits in memory while the policy trains; with LoRA the reference is the
same model with its adapters switched off. Truncation as for teacher forcing (``causal_lm``): the
prompt is cut from the left at ``max_prompt_tokens``, each completion at ``max_answer_tokens``.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from weaks2strong.models.causal_lm import (
    CandidateRow,
    SequenceLikelihoodModule,
    encode_row,
    padded_completions,
)
from weaks2strong.models.lm_logprobs import shared_prompt_logprobs, target_logprobs
from weaks2strong.models.losses import preference_loss
from weaks2strong.runtime.errors import UserInputError


@dataclass(frozen=True)
class PreferenceRow:
    prompt: str
    chosen: str
    rejected: str
    p: float = 1.0  # P(chosen is better)
    weight: float = 1.0
    ref_chosen: float = math.nan  # log π_ref(chosen | prompt), filled by with_reference
    ref_rejected: float = math.nan


def check_pairs(rows: list[PreferenceRow], where: str) -> None:
    """One line naming the first bad row: identical or empty completions, p outside [0, 1], w < 0."""
    for i, row in enumerate(rows):
        said = None
        if not row.chosen.strip() or not row.rejected.strip():
            said = "has an empty completion"
        elif row.chosen.strip() == row.rejected.strip():
            said = f"has chosen identical to rejected ({row.chosen.strip()[:40]!r})"
        elif not 0.0 <= row.p <= 1.0:  # NaN fails too
            said = f"has p = {row.p}, outside [0, 1]"
        elif not row.weight >= 0.0:
            said = f"has weight {row.weight} < 0"
        if said:
            raise UserInputError(f"{where}: preference pair {i} {said}")


class PreferenceCollator:
    """Rows -> one batch of 2B sequences, the B chosen then the B rejected, right-padded, with the
    completion-token mask and the rows' p, w and reference log-probs.

    ``share_prompt``: the batch holds the B prompts and the 2B completions apart instead
    (``prompt_ids`` (B, P) left-padded, ``completion_ids`` (2B, C) right-padded), and ``pair_logprobs`` runs
    each prompt once for its two completions (``shared_prompt_logprobs``): the same log-probs, at the
    cost of B prompts instead of 2B, which is most of a multi-turn dialogue pair.

    ``unpadded``: the batch is marked so (``unpadded``), and ``pair_logprobs`` runs it a sequence at a
    time (with ``share_prompt``: a prompt and its two completions at a time), without padding: the same
    log-probs. For a CPU, where a padded position costs as much as a real one (a third to a half of an
    HH-RLHF batch's positions) and one sequence's matmuls still run near full speed; a GPU's batch is
    worth its padding."""

    def __init__(self, tok, max_prompt_tokens: int = 256, max_answer_tokens: int = 64, share_prompt: bool = False,
                 unpadded: bool = False):
        self.tok, self.max_prompt_tokens, self.max_answer_tokens = tok, max_prompt_tokens, max_answer_tokens
        self.share_prompt, self.unpadded = share_prompt, unpadded

    def __call__(self, rows: list[PreferenceRow]) -> dict[str, torch.Tensor]:
        encoded = [encode_row(self.tok, CandidateRow(r.prompt, [r.chosen, r.rejected], [1.0, 1.0]),
                              self.max_prompt_tokens, self.max_answer_tokens) for r in rows]
        column = lambda name: torch.tensor([getattr(r, name) for r in rows], dtype=torch.float32)  # noqa: E731
        extras = {"p": column("p"), "weights": column("weight"), "ref_chosen": column("ref_chosen"),
                  "ref_rejected": column("ref_rejected"), **({"unpadded": torch.tensor(True)} if self.unpadded else {})}
        pad = self.tok.pad_token_id
        if self.share_prompt:
            prompts = padded_completions([p[::-1] for p, _ in encoded], [len(p) for p, _ in encoded], pad)
            prompts = {k: v.flip(-1) for k, v in prompts.items()}  # left-padded: each prompt ends at P - 1
            completions = padded_completions([c[side] for side in (0, 1) for _, c in encoded],
                                             [0] * (2 * len(encoded)), pad)
            return {"prompt_ids": prompts["input_ids"], "prompt_mask": prompts["attention_mask"],
                    "completion_ids": completions["input_ids"], "completion_mask": completions["attention_mask"],
                    **extras}
        pairs = [(prompt, completions[side]) for side in (0, 1) for prompt, completions in encoded]
        batch = padded_completions([p + c for p, c in pairs], [len(p) for p, _ in pairs], pad)
        return {**batch, **extras}


def pair_logprobs(lm, batch: dict[str, torch.Tensor], chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen (B,), rejected (B,)) summed completion log-probs, from one forward over the 2B sequences
    (a ``share_prompt`` batch: the B prompts once, then the 2B completions on their cache; an
    ``unpadded`` one: each sequence, or each prompt with its completions, without padding)."""
    unpadded = bool(batch.get("unpadded", False))
    if "prompt_ids" in batch:
        logps = shared_prompt_logprobs(lm, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                                       batch["completion_mask"], chunk_size=chunk_size,
                                       unpadded=unpadded).sum(-1)  # (2B,)
    else:
        logps = target_logprobs(lm, batch["input_ids"], batch["attention_mask"], batch["target_mask"],
                                chunk_size=chunk_size, unpadded=unpadded).sum(-1)  # (2B,)
    half = logps.shape[0] // 2
    return logps[:half], logps[half:]


@torch.no_grad()
def score_pairs(lm, collator: PreferenceCollator, rows: list[PreferenceRow], batch_size: int = 8,
                chunk_size: int = 1024, adapters: bool = True) -> np.ndarray:
    """(N, 2): log π(chosen | prompt) and log π(rejected | prompt) per row, with ``lm`` as it is now
    (``adapters=False``: a peft model with its adapters switched off, i.e. the model it wraps)."""
    was_training = lm.training
    lm.eval()
    device = next(lm.parameters()).device
    off = lm.disable_adapter() if not adapters and hasattr(lm, "disable_adapter") else contextlib.nullcontext()
    out = []
    with off:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collator(rows[start:start + batch_size]).items()}
            out.append(torch.stack(pair_logprobs(lm, batch, chunk_size), dim=1).cpu())
    lm.train(was_training)
    return torch.cat(out).double().numpy() if out else np.zeros((0, 2))


def with_reference(lm, collator: PreferenceCollator, rows: list[PreferenceRow], batch_size: int = 8,
                   chunk_size: int = 1024) -> list[PreferenceRow]:
    """The rows with ``ref_chosen``/``ref_rejected`` filled by the reference: ``lm`` as it is before
    alignment (a peft model: with its adapters off)."""
    scores = score_pairs(lm, collator, rows, batch_size, chunk_size, adapters=False)
    return [replace(r, ref_chosen=float(c), ref_rejected=float(j)) for r, (c, j) in zip(rows, scores)]


def reward_margins(lm, collator: PreferenceCollator, rows: list[PreferenceRow], beta: float = 0.1,
                   batch_size: int = 8) -> np.ndarray:
    """The implicit-reward judge (Rafailov et al. 2023, §5): r(x, y) = β (log π(y|x) − log π_ref(y|x));
    per row, r(chosen) − r(rejected), > 0 a vote for ``chosen``. The rows carry their reference log-probs."""
    policy = score_pairs(lm, collator, rows, batch_size)  # (N, 2)
    reference = np.array([[r.ref_chosen, r.ref_rejected] for r in rows]).reshape(-1, 2)
    return beta * ((policy[:, 0] - reference[:, 0]) - (policy[:, 1] - reference[:, 1]))


class DPOModule(SequenceLikelihoodModule):
    """The policy, trained with ``preference_loss`` on batches of ``PreferenceCollator``. Logs
    rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracy (train/ and val/)."""

    def __init__(self, lm: torch.nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, beta: float = 0.1, kind: str = "sigmoid", **kwargs):
        super().__init__(lm, optimizer, scheduler, **kwargs)
        self.beta, self.kind = beta, kind

    def _step(self, batch, stage: str) -> torch.Tensor:
        chosen, rejected = pair_logprobs(self.lm, batch, self.chunk_size)
        loss, chosen_rewards, rejected_rewards = preference_loss(
            chosen, rejected, batch["ref_chosen"], batch["ref_rejected"], batch["p"], batch["weights"],
            beta=self.beta, kind=self.kind, normalizer=self.global_weight(batch) if stage == "train" else None)
        size, sync = len(batch["p"]), stage == "val"
        margins = chosen_rewards - rejected_rewards
        if self._trainer is None:  # called directly (tests, scripts): nothing to log to
            return loss
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=sync)
        for name, value in (("chosen", chosen_rewards.mean()), ("rejected", rejected_rewards.mean()),
                            ("margins", margins.mean()), ("accuracy", (margins > 0).float().mean())):
            self.log(f"{stage}/rewards/{name}", value, batch_size=size, sync_dist=sync)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
