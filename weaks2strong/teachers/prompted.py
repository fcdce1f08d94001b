"""A prompted causal LM as a zero-shot teacher: score each class's verbalizer after the prompt.

p(class k | x) ∝ p_LM(verbalizer_k | prompt(x)), the verbalizer's full log-likelihood (so answers
of several tokens work), renormalised over the K classes.
"""
from __future__ import annotations

import copy
import string

import numpy as np
import torch
from tqdm.auto import tqdm

from weaks2strong.tasks import Task
from weaks2strong.teachers.base import TeacherError
from weaks2strong.zoo import pick_device, resolve_model


class PromptedLM:
    def __init__(self, model: str, batch_size: int = 16, max_length: int = 256, use_chat_template: bool = True,
                 shots: int = 0, shot_seed: int = 0, calibrate: bool = False, reuse_prefix: bool = True,
                 device: str = "auto", models_dir: str | None = None, trust_remote_code: bool = False,
                 progress: bool = True):
        self.model_name, self.batch_size, self.max_length = model, batch_size, max_length
        self.shots, self.shot_seed, self.calibrate = shots, shot_seed, calibrate
        self.reuse_prefix = reuse_prefix
        self.use_chat_template, self.progress = use_chat_template, progress
        self.models_dir, self.trust_remote_code = models_dir, trust_remote_code
        self.device = pick_device(device)
        self._lm = None

    def _load(self):
        if self._lm is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = resolve_model(self.model_name, self.models_dir)
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
            tok.padding_side = "left"  # the next token is read at the last position of every row
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            lm = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=self.trust_remote_code)
            self._lm = (tok, lm.to(self.device).eval())
        return self._lm

    @property
    def split_independent(self) -> bool:
        """Zero-shot, an example's answer depends on it alone; k-shot, on the shots drawn from weak_train."""
        return self.shots == 0

    def fit(self, task: Task) -> None:
        """Draw the k shots (from weak_train only) and, with ``calibrate``, the content-free prior."""
        tok, lm = self._load()
        self._verbalizer_ids(tok, task)  # fail early on a verbalizer that tokenizes to nothing
        self.shots_ = self._draw_shots(task)
        self.content_free_ = None
        if self.calibrate:
            # contextual calibration (Zhao et al. 2021): q ∝ p / p(· | content-free input)
            blank = content_free_prompt(task)
            self.content_free_ = self._probs(tok, lm, task, self.render(tok, [blank]), desc=None)[0]  # (K,)

    def _draw_shots(self, task: Task) -> list[tuple[str, str, str]]:
        """(prompt, answer, example_id) demonstrations, always from weak_train: never the split labelled."""
        if not self.shots:
            return []
        split = task.split("weak_train")
        rows = np.random.default_rng(self.shot_seed).choice(len(split), size=self.shots, replace=False)
        prompts, labels = task.prompts("weak_train"), task.labels("weak_train")
        return [(prompts[i], task.verbalizers[labels[i]], split["example_id"][i]) for i in rows]

    def render(self, tok, prompts: list[str]) -> list[str]:
        shots = getattr(self, "shots_", [])
        if self.use_chat_template and tok.chat_template:
            history = [m for p, answer, _ in shots for m in ({"role": "user", "content": p},
                                                             {"role": "assistant", "content": answer})]
            return [tok.apply_chat_template([*history, {"role": "user", "content": p}], tokenize=False,
                                            add_generation_prompt=True) for p in prompts]
        demos = "".join(f"{p}{answer}\n\n" for p, answer, _ in shots)
        return [demos + p for p in prompts]

    @staticmethod
    def _verbalizer_ids(tok, task: Task) -> list[list[int]]:
        ids = [tok(v, add_special_tokens=False).input_ids for v in task.verbalizers]
        for verbalizer, toks in zip(task.verbalizers, ids):
            if not toks:
                raise TeacherError(f"verbalizer '{verbalizer}' of task '{task.name}' tokenizes to nothing")
        return ids

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        tok, lm = self._load()
        if not hasattr(self, "shots_"):
            self.fit(task)
        probs = self._probs(tok, lm, task, self.render(tok, task.prompts(split)), desc=f"{self.model_name} on {split}")
        if self.content_free_ is not None:
            probs = probs / self.content_free_
            probs /= probs.sum(axis=1, keepdims=True)
        return probs

    @torch.inference_mode()
    def _probs(self, tok, lm, task: Task, prompts: list[str], desc: str | None) -> np.ndarray:
        """Class probabilities (N, K) from the verbalizers' log-likelihoods after each rendered prompt."""
        verbalizers = self._verbalizer_ids(tok, task)
        encoded = tok(prompts, add_special_tokens=False, truncation=True, max_length=self.max_length).input_ids
        order = np.argsort([len(e) for e in encoded], kind="stable")  # similar lengths share a batch
        scores = np.zeros((len(prompts), task.num_classes))
        prefix = None
        if self.reuse_prefix and len(prompts) > 1 and all(len(v) == 1 for v in verbalizers):
            prefix, encoded = self._shared_prefix(lm, encoded)
        bar = tqdm(total=len(prompts), desc=desc, unit="ex", disable=not self.progress or desc is None)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = [encoded[i] for i in rows]
            if prefix is not None:
                scores[rows] = self._score_batch_after_prefix(lm, tok, prefix, batch, verbalizers)
            else:
                scores[rows] = self._score_batch(lm, tok, batch, verbalizers)
            bar.update(len(rows))
        bar.close()
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    def _score_batch(self, lm, tok, prompts: list[list[int]], verbalizers: list[list[int]]) -> np.ndarray:
        """Sum of the verbalizer tokens' log-probs after each prompt: (B, K)."""
        if all(len(v) == 1 for v in verbalizers):  # one forward pass reads every class at once
            logp = self._next_token_logprobs(lm, tok, prompts)  # (B, V)
            return logp[:, [v[0] for v in verbalizers]].cpu().double().numpy()
        out = np.zeros((len(prompts), len(verbalizers)))
        for k, verbalizer in enumerate(verbalizers):
            seqs = [p + verbalizer for p in prompts]
            logp = self._token_logprobs(lm, tok, seqs)  # (B, T-1)
            out[:, k] = logp[:, -len(verbalizer):].sum(-1).cpu().double().numpy()
        return out

    def _shared_prefix(self, lm, encoded: list[list[int]]):
        """Encode the tokens every prompt starts with once; return (prefix, per-prompt remainders).

        The instruction (and a chat template's system turn) is most of a short prompt, so its
        key/value cache, computed once and reused for every batch, saves most of the work.
        """
        width = min(len(e) for e in encoded) - 1  # keep at least one token per prompt
        first = encoded[0]
        shared = next((i for i in range(width) if any(e[i] != first[i] for e in encoded)), width)
        if shared < 2:
            return None, encoded
        ids = torch.tensor([first[:shared]], device=self.device)
        cache = lm(input_ids=ids, use_cache=True).cache
        return (shared, cache), [e[shared:] for e in encoded]

    def _score_batch_after_prefix(self, lm, tok, prefix, seqs, verbalizers) -> np.ndarray:
        """Next-token scores for [prefix][padding][suffix] rows, reusing the prefix's cache: (B, K).

        Padding sits between the prefix and each suffix, so every row ends at the same position and
        the LM head runs once per row; masks and positions make it exactly the unpadded sequence.
        """
        shared, cache = prefix
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        positions = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, shared + width - len(s):] = 1
            positions[i, width - len(s):] = torch.arange(shared, shared + len(s))
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(len(seqs))
        out = lm(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                 position_ids=positions.to(self.device), cache=batch_cache, use_cache=True, logits_to_keep=1)
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
        return logp[:, [v[0] for v in verbalizers]].cpu().double().numpy()

    def _forward(self, lm, tok, seqs: list[list[int]], last_only: bool = False):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        # left padding: positions must count from each row's first real token
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        # last_only: the LM head (V = tens of thousands) runs on one position instead of all T
        out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1 if last_only else 0)
        return out.logits.float(), ids  # (B, T or 1, V)

    def _next_token_logprobs(self, lm, tok, seqs):
        logits, _ = self._forward(lm, tok, seqs, last_only=True)
        return torch.log_softmax(logits[:, -1], dim=-1)  # (B, V)

    def _token_logprobs(self, lm, tok, seqs):
        logits, ids = self._forward(lm, tok, seqs)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V)
        return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)


def content_free_prompt(task: Task) -> str:
    """The task's prompt with every field "N/A": contextual calibration's content-free input."""
    fields = {f for _, f, _, _ in string.Formatter().parse(task.prompt) if f}
    return task.prompt.format(**{f: "N/A" for f in fields})
