"""Chunk-level beam search (CBS, Zhou et al. 2024, Algorithm 1): steer a frozen strong model at
decoding time with a guide (weaks2strong.search.guide), no training of the strong model.

W hypotheses are kept. Each unfinished one is extended by K samples of L tokens from the strong
model; every extension is scored by the guide on its whole text so far; the W best (finished
hypotheses compete too) go on. The search starts from W copies of the empty answer, as the authors'
code does (the prompt repeated W·K times), so every chunk, the first included, samples W·K rows:
the compute of best-of-(W·K). Best-of-N is W = 1, K = N, L = ∞: one chunk to the end, the best of
N by the guide. The strong model reads the prompt once; its key/value cache is repeated for the
samples and the kept rows are selected from it after each chunk, so no token is read twice.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from weaks2strong.models.causal_lm import ANSWER_END, stop_ids
from weaks2strong.models.lm_logprobs import cache_kwarg, returned_cache

# Keys cached answers of W > 1 (weaks2strong.pipeline.search). 2: the first chunk samples W·K rows, not K.
CBS_VERSION = 2

# (texts, ended) -> the guide's score of each partial answer (C,); ended: the strong model stopped it
Scorer = Callable[[list[str], list[bool]], np.ndarray]


@dataclass
class Hypothesis:
    tokens: list[int]  # the strong model's tokens so far, the answer end excluded
    text: str  # decoded, cut at the answer end
    finished: bool  # no more extension: the strong model stopped it, or the token budget is spent
    score: float
    ended: bool = False  # the strong model stopped it itself (EOS or the answer end), not the budget


@dataclass
class SearchResult:
    best: Hypothesis
    kept: list[Hypothesis]  # the final beam, best first
    strong_tokens: int  # tokens the strong model sampled: the compute the methods are compared at


class StrongModel:
    """The frozen strong model, its tokenizer and how it samples (temperature, token budget).
    Temperature 0 decodes greedily: the reference a search must beat (K > 1 is then pointless)."""

    def __init__(self, lm, tok, temperature: float = 0.7, max_new_tokens: int = 10):
        if temperature < 0:
            raise ValueError(f"temperature={temperature}: must be >= 0 (0: greedy)")
        self.lm, self.tok, self.temperature, self.max_new_tokens = lm.eval(), tok, temperature, max_new_tokens
        self.device = next(lm.parameters()).device
        self.stop = torch.tensor(stop_ids(tok), device=self.device)
        self.cache_kw = cache_kwarg(lm)

    @torch.inference_mode()
    def read(self, prompt_ids: list[int], prefix_cache=None):
        """(cache, next-token logits (1, V)) after the prompt, continuing a shared prefix's cache (copied,
        never changed) when given; positions follow from the cache's length."""
        ids = torch.tensor([prompt_ids], device=self.device)  # (1, P)
        extra = {self.cache_kw: copy.deepcopy(prefix_cache)} if prefix_cache is not None else {}
        out = self.lm(input_ids=ids, use_cache=True, logits_to_keep=1, **extra)
        return returned_cache(out), out.logits[:, -1].float()

    @torch.inference_mode()
    def sample(self, cache, logits: torch.Tensor, steps: int, generator: torch.Generator):
        """Up to ``steps`` sampled tokens per row (R, ≤steps) and whether each row hit a stop token
        (R,). Rows that stopped keep being fed (their tokens after the stop are ignored), so every
        unfinished row ends with the same length and the cache stays rectangular."""
        tokens = torch.empty((len(logits), 0), dtype=torch.long, device=self.device)  # (R, t)
        done = torch.zeros(len(logits), dtype=torch.bool, device=self.device)  # (R,)
        for _ in range(steps):
            if self.temperature == 0:
                pick = logits.argmax(-1, keepdim=True)  # (R, 1)
            else:
                pick = torch.multinomial(torch.softmax(logits / self.temperature, -1), 1, generator=generator)
            tokens = torch.cat([tokens, pick], 1)
            done |= torch.isin(pick[:, 0], self.stop)
            if done.all():
                break
            out = self.lm(input_ids=pick, use_cache=True, **{self.cache_kw: cache})
            cache, logits = returned_cache(out), out.logits[:, -1].float()
        return cache, logits, tokens, done

    def hypothesis(self, parent: Hypothesis, new: list[int], stopped: bool, budget_left: int) -> Hypothesis:
        stop = set(self.stop.tolist())
        cut = next((j for j, t in enumerate(new) if t in stop), len(new))
        tokens = parent.tokens + new[:cut]
        decoded = self.tok.decode(tokens, skip_special_tokens=True)  # a token may hold the answer end inside
        ended = stopped or ANSWER_END in decoded
        return Hypothesis(tokens, decoded.split(ANSWER_END)[0], ended or budget_left <= 0, 0.0, ended)


def chunk_beam_search(strong: StrongModel, prompt_ids: list[int], score: Scorer, width: int, samples: int,
                      chunk: int | None, generator: torch.Generator, prefix_cache=None) -> SearchResult:
    """CBS with beam ``width`` W, ``samples`` K per hypothesis and ``chunk`` L tokens (None: to the
    end). Ties go to the earlier hypothesis, so the search is deterministic given the generator."""
    if width < 1 or samples < 1 or (chunk is not None and chunk < 1):
        raise ValueError(f"width={width}, samples={samples}, chunk={chunk}: each must be ≥ 1 (chunk may be None)")
    cache, logits = strong.read(prompt_ids, prefix_cache)
    active, kept = [Hypothesis([], "", False, 0.0)], []
    used = sampled = 0
    while active:
        steps = min(chunk or strong.max_new_tokens, strong.max_new_tokens - used)
        # the empty answer stands for W copies of itself: W·K samples in the first chunk too
        per_parent = samples * width if used == 0 else samples
        cache.batch_repeat_interleave(per_parent)
        cache, logits, tokens, done = strong.sample(cache, logits.repeat_interleave(per_parent, 0), steps, generator)
        used += steps
        sampled += tokens.numel()
        children = [strong.hypothesis(active[r // per_parent], tokens[r].tolist(), bool(done[r]),
                                      strong.max_new_tokens - used) for r in range(len(tokens))]
        for child, value in zip(children, score([c.text for c in children], [c.ended for c in children])):
            child.score = float(value)
        pool = children + [h for h in kept if h.finished]
        order = sorted(range(len(pool)), key=lambda i: -pool[i].score)[:width]  # stable: ties keep pool order
        kept = [pool[i] for i in order]
        rows = [i for i in order if i < len(children) and not pool[i].finished]
        active = [pool[i] for i in rows]
        if active:
            index = torch.tensor(rows, device=strong.device)
            cache.batch_select_indices(index)
            logits = logits[index]
    return SearchResult(kept[0], kept, sampled)


def best_of_n(strong: StrongModel, prompt_ids: list[int], score: Scorer, n: int, generator: torch.Generator,
              prefix_cache=None) -> SearchResult:
    """N complete samples, the best by the guide: the baseline CBS generalises."""
    cache, logits = strong.read(prompt_ids, prefix_cache)
    cache.batch_repeat_interleave(n)
    _, _, tokens, done = strong.sample(cache, logits.repeat_interleave(n, 0), strong.max_new_tokens, generator)
    root = Hypothesis([], "", False, 0.0)
    answers = [strong.hypothesis(root, row.tolist(), bool(d), 0) for row, d in zip(tokens, done)]
    values = score([a.text for a in answers], [a.ended for a in answers])
    for answer, value in zip(answers, values):
        answer.score = float(value)
    best = int(np.argmax(values))
    return SearchResult(answers[best], sorted(answers, key=lambda h: -h.score), int(tokens.numel()))
