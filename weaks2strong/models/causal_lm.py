"""A causal LM trained by confidence-weighted teacher forcing on candidate answers, and greedy or
sampled answering: the generation student, its ceiling (gold answers, q = 1, w = 1) and the
fine-tuned weak LM teachers share these, so they differ only in their targets.

A training row is (prompt, candidates, q, w): the prompt's tokens carry no loss; each candidate is
the completion " " + answer + "\\n" (the newline ends an answer, as in the k-shot prompts), trained
with weight w · q(c). Long inputs are cut: the prompt from the left (the question is at its end),
the completion at ``max_answer_tokens`` (a cut completion loses its closing newline).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from tqdm.auto import tqdm

from weaks2strong.models.lm_logprobs import cache_kwarg, returned_cache, shared_prompt_logprobs, target_logprobs
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
    on the completion tokens and the (B, C) layout the loss needs.

    ``share_prompt``: the batch holds the prompts and the completions apart instead: ``prefix_ids``
    (L,), the tokens every prompt of the batch starts with (the task's instruction); ``prompt_ids``
    (B, P), the rest of each prompt, left-padded; ``completion_ids`` (N, A) right-padded, one per
    (example, candidate) slot, continuing prompt ``prompt_index``. ``sequence_logprobs`` then reads the
    prefix once and each prompt once for all its candidates (``shared_prompt_logprobs``): the same
    log-probs, at the cost of one prefix and B prompt rests instead of N whole prompts."""

    def __init__(self, tok, max_prompt_tokens: int = 256, max_answer_tokens: int = 24, every_candidate: bool = False,
                 share_prompt: bool = False):
        self.tok, self.max_prompt_tokens, self.max_answer_tokens = tok, max_prompt_tokens, max_answer_tokens
        self.every_candidate = every_candidate  # score zero-mass candidates too (a softmax over them needs all)
        self.share_prompt = share_prompt

    def __call__(self, rows: list[CandidateRow]) -> dict[str, torch.Tensor]:
        prompts, completions, slots = [], [], []
        width_c = max(1, max(len(r.candidates) for r in rows))
        probs = torch.zeros(len(rows), width_c)
        for i, row in enumerate(rows):
            prompt, answers = encode_row(self.tok, row, self.max_prompt_tokens, self.max_answer_tokens)
            prompts.append(prompt)
            for c, completion in enumerate(answers):
                if not completion or (row.probs[c] <= 0 and not self.every_candidate):
                    continue
                completions.append(completion)
                slots.append((i, c))
                probs[i, c] = row.probs[c]
        slots = torch.tensor(slots, dtype=torch.long).reshape(-1, 2)  # (N, 2): (example, candidate)
        weights = torch.tensor([r.weight for r in rows], dtype=torch.float32)  # (B,)
        extras = {"slots": slots, "probs": probs, "weights": weights}
        pad = self.tok.pad_token_id
        if self.share_prompt:
            n = common_prefix(prompts)
            left = padded_completions([p[n:][::-1] for p in prompts], [len(p) - n for p in prompts], pad)
            left = {k: v.flip(-1) for k, v in left.items()}  # left-padded: each prompt ends at P - 1
            right = padded_completions(completions, [0] * len(completions), pad)
            return {"prefix_ids": torch.tensor(prompts[0][:n], dtype=torch.long), "prompt_ids": left["input_ids"],
                    "prompt_mask": left["attention_mask"], "completion_ids": right["input_ids"],
                    "completion_mask": right["attention_mask"], "prompt_index": slots[:, 0], **extras}
        seqs = [prompts[i] + completion for (i, _), completion in zip(slots.tolist(), completions)]
        starts = [len(prompts[i]) for i, _ in slots.tolist()]
        return {**padded_completions(seqs, starts, pad), **extras}


def common_prefix(seqs: list[list[int]]) -> int:
    """The number of leading tokens that every sequence shares, leaving each at least one of its own
    (the task's instruction, before the example's text; the last prompt token predicts the answer)."""
    shortest = min(len(s) for s in seqs) - 1
    n = 0
    while n < shortest and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def padded_completions(seqs: list[list[int]], starts: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (N, T) ``input_ids`` and ``attention_mask``, and a ``target_mask`` on each
    sequence's tokens from ``starts[j]`` on: its completion (the prompt carries no loss)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.zeros((len(seqs), width), dtype=torch.bool)
    for j, (seq, start) in enumerate(zip(seqs, starts)):
        ids[j, : len(seq)] = torch.tensor(seq)
        mask[j, : len(seq)] = 1
        target[j, start : len(seq)] = True
    return {"input_ids": ids, "attention_mask": mask, "target_mask": target}


class SequenceLikelihoodModule(pl.LightningModule):
    """A causal LM scored by whole-sequence log-likelihoods: ``sequence_logprobs`` gives log p(candidate
    answer | prompt) per (example, candidate), and training minimises ``weighted_teacher_forcing_loss``,
    the candidates' NLL weighted by their aggregated posterior and the example's weight (teacher forcing
    on weighted candidate answers: weighted SFT). ``val/nll`` is the gold answers' per-example NLL on val
    (the number epochs and learning rates are chosen by). The DPO and verbalizer modules build on it.

    ``lora``: train low-rank adapters only (``with_lora``'s arguments), e.g. ``{r: 16, alpha: 32}``.
    ``freeze_embeddings``: Gemma-3-270M's 262k-token table is 168M of its 268M weights; frozen, a CPU
    step skips its dense gradient and its AdamW update, and the few hundred answers of a CPU-size run
    cannot retrain a vocabulary anyway."""

    def __init__(self, lm: torch.nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, chunk_size: int = 1024, freeze_embeddings: bool = False,
                 gradient_checkpointing: bool = False, lora: dict | None = None):
        super().__init__()
        if lora:  # low-rank adapters (peft); the pretrained weights stay frozen, and are the adapter-free model
            lm = with_lora(lm, **lora)
        self.lm, self.optimizer_factory = lm, optimizer
        if gradient_checkpointing:  # recompute the body's activations in backward: less memory, ~30% more time
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if freeze_embeddings:  # the token table (and the head tied to it) stays as pretrained
            for module in (lm.get_input_embeddings(), lm.get_output_embeddings()):
                for p in module.parameters() if module is not None else ():
                    p.requires_grad_(False)
        self.scheduler_factory = scheduler or linear_warmup_decay
        self.chunk_size = chunk_size

    def sequence_logprobs(self, batch, fill: float = 0.0) -> torch.Tensor:
        """(B, C) log p(candidate c | prompt of example i), summed over the completion tokens; ``fill``
        where a slot holds no sequence."""
        if "prompt_ids" in batch:  # each prompt read once, its cache shared by its candidates (share_prompt)
            logp = shared_prompt_logprobs(self.lm, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"],
                                          batch["completion_mask"], self.chunk_size, batch["prompt_index"],
                                          batch["prefix_ids"])  # (N, L)
        else:
            logp = target_logprobs(self.lm, batch["input_ids"], batch["attention_mask"], batch["target_mask"],
                                   chunk_size=self.chunk_size)  # (N, T)
        scores = torch.full_like(batch["probs"], fill)  # (B, C)
        return scores.index_put((batch["slots"][:, 0], batch["slots"][:, 1]), logp.sum(-1))

    def global_weight(self, batch) -> torch.Tensor | None:
        """DDP averages gradients over ranks: the loss is normalised by the mean over ranks of their weight sums."""
        if self._trainer is not None and self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(batch["weights"].sum(), reduce_op="sum") / self.trainer.world_size
        return None

    def _loss(self, batch) -> torch.Tensor:
        nll = -self.sequence_logprobs(batch)  # (B, C)
        return weighted_teacher_forcing_loss(nll, batch["probs"], batch["weights"], self.global_weight(batch))

    def on_train_epoch_start(self):
        self.lm.train()  # from_pretrained leaves the model in eval mode, and Lightning keeps modes as found

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


# The old name stays importable because a cache key names it: conf/student/gemma3_gen.yaml's
# model._target_ (weaks2strong.models.causal_lm.TeacherForcingModule) is part of config_slice(cfg.student),
# which keys gen_student; renaming that string would invalidate every trained generation student.
TeacherForcingModule = SequenceLikelihoodModule


def with_lora(lm: torch.nn.Module, r: int = 16, alpha: int = 32, dropout: float = 0.05,
              target_modules: str | list[str] = "all-linear") -> torch.nn.Module:
    """``lm`` with LoRA adapters (Hu et al. 2021) on ``target_modules`` ("all-linear": every linear
    layer but the output head); only the adapters train. B starts at zero, so the wrapped model
    computes exactly what ``lm`` did until the first step."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=target_modules)
    return get_peft_model(lm, config)


def encode_prompts(tok, prefix: str, prompts: list[str], max_prompt_tokens: int) -> tuple[list[int], list[list[int]]]:
    """(prefix ids, per-prompt ids after it). A shared prefix (k-shot demonstrations) is encoded once
    with the special tokens; the prompts after it without. No prefix: each prompt gets them itself."""
    if not prefix:
        return [], [tok(p, add_special_tokens=True).input_ids[-max_prompt_tokens:] for p in prompts]
    return tok(prefix, add_special_tokens=True).input_ids, \
        [tok(p, add_special_tokens=False).input_ids[-max_prompt_tokens:] for p in prompts]


@torch.no_grad()
def prefix_cache(lm, prefix_ids: list[int]):
    """The key/value cache of the shared prefix, computed once (None without a prefix)."""
    if not prefix_ids:
        return None
    device = next(lm.parameters()).device
    ids = torch.tensor([prefix_ids], device=device)
    out = lm(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
    return returned_cache(out)


def stop_ids(tok) -> list[int]:
    """The tokens that end an answer: EOS and the answer end ("\\n"; "\\n\\n" may be one token of its own)."""
    ends = {tok.eos_token_id, *tok(ANSWER_END, add_special_tokens=False).input_ids[-1:],
            *tok(ANSWER_END * 2, add_special_tokens=False).input_ids[-1:]}
    return sorted(i for i in ends if i is not None)


@torch.inference_mode()
def generate_answers(lm, tok, prompts: list[str], max_new_tokens: int = 16, batch_size: int = 16,
                     num_samples: int = 0, temperature: float = 0.7, seed: int = 0, max_prompt_tokens: int = 512,
                     prefix: str = "", desc: str | None = None) -> list[list[str]]:
    """Per prompt: [greedy answer, *num_samples sampled answers], each cut at the first newline.

    A decoding loop of our own, because the costly part on CPU is reading the prompt: the shared
    ``prefix`` (k-shot demonstrations) is read once for all prompts, each batch's prompts once for
    its greedy and sampled answers (their caches are repeated, not recomputed), then one token per
    row per step. Prompts are left-padded after the prefix; masks and positions make every row its
    unpadded sequence.
    """
    lm.eval()
    device = next(lm.parameters()).device
    head, encoded = encode_prompts(tok, prefix, prompts, max_prompt_tokens)
    shared = prefix_cache(lm, head)
    n_head, group = len(head), 1 + num_samples
    stop = torch.tensor(stop_ids(tok), device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    order = np.argsort([len(e) for e in encoded], kind="stable")
    out: list[list[str]] = [[] for _ in prompts]
    cache_kw = cache_kwarg(lm)
    bar = tqdm(total=len(prompts), desc=desc, unit="q", disable=desc is None)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        body = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, width - len(encoded[i]):] = torch.tensor(encoded[i])
            body[j, width - len(encoded[i]):] = 1
        mask = torch.cat([torch.ones(len(rows), n_head, dtype=torch.long), body], 1).to(device)  # (B, P+W)
        positions = (n_head + body.cumsum(-1) - 1).clamp(min=n_head).to(device)  # (B, W)
        cache = None
        if shared is not None:
            cache = copy.deepcopy(shared)
            cache.batch_repeat_interleave(len(rows))
        step = lm(input_ids=ids.to(device), attention_mask=mask, position_ids=positions, use_cache=True,
                  logits_to_keep=1, **({cache_kw: cache} if cache is not None else {}))
        cache = returned_cache(step)
        logits = step.logits[:, -1].float()  # (B, V)
        if group > 1:  # the greedy and the sampled answers of a prompt share its cache
            cache.batch_repeat_interleave(group)
            logits, mask = logits.repeat_interleave(group, 0), mask.repeat_interleave(group, 0)
            positions = positions.repeat_interleave(group, 0)
        sampled = (torch.arange(len(logits), device=device) % group) > 0  # (B*G,) row 0 of a group is greedy
        position = positions[:, -1:]  # (B*G, 1)
        tokens = torch.empty((len(logits), 0), dtype=torch.long, device=device)
        done = torch.zeros(len(logits), dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            pick = logits.argmax(-1)  # (B*G,)
            if sampled.any():
                draws = torch.multinomial(torch.softmax(logits[sampled] / temperature, -1), 1, generator=generator)
                pick[sampled] = draws[:, 0]
            pick = torch.where(done, torch.full_like(pick, tok.pad_token_id), pick)
            tokens = torch.cat([tokens, pick[:, None]], 1)
            done |= torch.isin(pick, stop)
            if done.all():
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            position = position + 1
            step = lm(input_ids=pick[:, None], attention_mask=mask, position_ids=position, use_cache=True,
                      **{cache_kw: cache})
            cache = returned_cache(step)
            logits = step.logits[:, -1].float()
        texts = tok.batch_decode(tokens.cpu(), skip_special_tokens=True)
        for j, i in enumerate(rows):
            out[i].extend(t.split(ANSWER_END)[0].strip() for t in texts[j * group : (j + 1) * group])
        bar.update(len(rows))
    bar.close()
    return out


def __getattr__(name: str):
    # A DataModule that moved to weaks2strong/student/data/ stays reachable here, lazily (models never
    # imports student at import time): conf/student/*.yaml's data._target_ names this path, and that
    # string is part of config_slice(cfg.student), which keys distill (cache keys).
    if name == "CandidateDataModule":
        from weaks2strong.student.data.candidates import CandidateDataModule

        return CandidateDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
