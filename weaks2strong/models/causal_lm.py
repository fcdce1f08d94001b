"""A causal LM trained by confidence-weighted teacher forcing on candidate answers, and greedy or
sampled answering: the generation student, its ceiling (gold answers, q = 1, w = 1) and the
fine-tuned weak LM teachers share these, so they differ only in their targets.

A training row is (prompt, candidates, q, w): the prompt's tokens carry no loss; each candidate is
the completion " " + answer + "\\n" (the newline ends an answer, as in the k-shot prompts), trained
with weight w · q(c). Long inputs are cut: the prompt from the left (the question is at its end),
the completion at ``max_answer_tokens`` (a cut completion loses its closing newline).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from weaks2strong.models.lm_logprobs import target_logprobs
from weaks2strong.models.losses import weighted_teacher_forcing_loss
from weaks2strong.models.schedules import linear_warmup_decay

ANSWER_END = "\n"


@dataclass
class CandidateRow:
    prompt: str
    candidates: list[str]  # answer texts, without the leading space or the closing newline
    probs: list[float]  # q_i(c), summing to at most one
    weight: float = 1.0  # w_i


def load_causal_lm(path: str, trust_remote_code: bool = False):
    """(tokenizer, model) from a local folder; a tokenizer without a pad token pads with its EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=torch.float32)
    return tok, model


def encode_row(tok, row: CandidateRow, max_prompt_tokens: int, max_answer_tokens: int):
    """(prompt ids, [completion ids per candidate]) with the documented truncation."""
    prompt = tok(row.prompt, add_special_tokens=True).input_ids[-max_prompt_tokens:]
    completions = [tok(" " + c.strip() + ANSWER_END, add_special_tokens=False).input_ids[:max_answer_tokens]
                   for c in row.candidates]
    return prompt, completions


class CandidateCollator:
    """Rows -> one padded batch of (example, candidate) sequences, right-padded, with a target mask
    on the completion tokens and the (B, C) layout the loss needs."""

    def __init__(self, tok, max_prompt_tokens: int = 256, max_answer_tokens: int = 24):
        self.tok, self.max_prompt_tokens, self.max_answer_tokens = tok, max_prompt_tokens, max_answer_tokens

    def __call__(self, rows: list[CandidateRow]) -> dict[str, torch.Tensor]:
        seqs, starts, slots = [], [], []
        width_c = max(1, max(len(r.candidates) for r in rows))
        probs = torch.zeros(len(rows), width_c)
        for i, row in enumerate(rows):
            prompt, completions = encode_row(self.tok, row, self.max_prompt_tokens, self.max_answer_tokens)
            for c, completion in enumerate(completions):
                if not completion or row.probs[c] <= 0:
                    continue
                seqs.append(prompt + completion)
                starts.append(len(prompt))
                slots.append((i, c))
                probs[i, c] = row.probs[c]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        target = torch.zeros((len(seqs), width), dtype=torch.bool)
        for j, (seq, start) in enumerate(zip(seqs, starts)):
            ids[j, : len(seq)] = torch.tensor(seq)
            mask[j, : len(seq)] = 1
            target[j, start : len(seq)] = True  # completion tokens only: the prompt carries no loss
        return {"input_ids": ids, "attention_mask": mask, "target_mask": target,
                "slots": torch.tensor(slots, dtype=torch.long).reshape(-1, 2), "probs": probs,
                "weights": torch.tensor([r.weight for r in rows], dtype=torch.float32)}


class CandidateDataModule(pl.LightningDataModule):
    """Training rows (w2s_train's candidates and targets) and validation rows (val's gold answers)."""

    def __init__(self, tok, train_rows: list[CandidateRow], val_rows: list[CandidateRow], batch_size: int = 8,
                 max_prompt_tokens: int = 256, max_answer_tokens: int = 24, seed: int = 0):
        super().__init__()
        self.train_rows = [r for r in train_rows if r.weight > 0 and sum(r.probs) > 0]
        self.val_rows, self.batch_size, self.seed = val_rows, batch_size, seed
        self.collate = CandidateCollator(tok, max_prompt_tokens, max_answer_tokens)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_rows, batch_size=self.batch_size, shuffle=True, generator=generator,
                          collate_fn=self.collate)

    def val_dataloader(self):
        return DataLoader(self.val_rows, batch_size=self.batch_size, collate_fn=self.collate)


class TeacherForcingModule(pl.LightningModule):
    """A causal LM trained with ``weighted_teacher_forcing_loss``; ``val/nll`` is the gold answers'
    per-example NLL on val (the number epochs and learning rates are chosen by)."""

    def __init__(self, lm: torch.nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, chunk_size: int = 1024):
        super().__init__()
        self.lm, self.optimizer_factory = lm, optimizer
        self.scheduler_factory = scheduler or linear_warmup_decay
        self.chunk_size = chunk_size

    def _loss(self, batch) -> torch.Tensor:
        logp = target_logprobs(self.lm, batch["input_ids"], batch["attention_mask"], batch["target_mask"],
                               chunk_size=self.chunk_size)  # (P, T)
        nll = torch.zeros_like(batch["probs"])  # (B, C)
        nll = nll.index_put((batch["slots"][:, 0], batch["slots"][:, 1]), -logp.sum(-1))  # (B, C)
        normalizer = None
        if self._trainer is not None and self.trainer.world_size > 1:  # DDP averages gradients over ranks: normalise by the global weight
            normalizer = self.trainer.strategy.reduce(batch["weights"].sum(), reduce_op="sum") / self.trainer.world_size
        return weighted_teacher_forcing_loss(nll, batch["probs"], batch["weights"], normalizer)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["weights"]))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/nll", self._loss(batch), prog_bar=True, batch_size=len(batch["weights"]), sync_dist=True)

    def configure_optimizers(self):
        # 2-D weights decay, norms and biases do not (the usual transformer convention)
        decayed = [p for p in self.lm.parameters() if p.requires_grad and p.ndim >= 2]
        plain = [p for p in self.lm.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = self.optimizer_factory([{"params": decayed}, {"params": plain, "weight_decay": 0.0}])
        scheduler = self.scheduler_factory(optimizer, total_steps=max(1, self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@torch.inference_mode()
def generate_answers(lm, tok, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 16,
                     num_samples: int = 0, temperature: float = 0.7, seed: int = 0, max_prompt_tokens: int = 512,
                     desc: str | None = None) -> list[list[str]]:
    """Per prompt: [greedy answer, *num_samples sampled answers], each cut at the first newline and
    stripped (an empty answer stays empty: the caller drops it)."""
    lm.eval()
    device = next(lm.parameters()).device
    encoded = [tok(p, add_special_tokens=True).input_ids[-max_prompt_tokens:] for p in prompts]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    out: list[list[str]] = [[] for _ in prompts]
    stop = [i for i in {tok.eos_token_id, *tok(ANSWER_END, add_special_tokens=False).input_ids[-1:]} if i is not None]
    torch.manual_seed(seed)
    bar = tqdm(total=len(prompts), desc=desc, unit="q", disable=desc is None)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):  # left padding: every row's answer starts at the same column
            ids[j, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[j, width - len(encoded[i]):] = 1
        ids, mask = ids.to(device), mask.to(device)
        runs = [dict(do_sample=False)]
        if num_samples:
            runs.append(dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                             num_return_sequences=num_samples))
        for kwargs in runs:
            gen = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=stop,
                              pad_token_id=tok.pad_token_id, **kwargs)
            texts = tok.batch_decode(gen[:, width:], skip_special_tokens=True)
            per = len(texts) // len(rows)
            for j, i in enumerate(rows):
                out[i].extend(t.split(ANSWER_END)[0].strip() for t in texts[j * per : (j + 1) * per])
        bar.update(len(rows))
    bar.close()
    return out
