"""The guide of weak-to-strong search (Zhou et al. 2024, eq. 4): a small tuned model and its
untuned self score a partial answer y of the strong model by log π_tuned(y|x) − log π_untuned(y|x).

The pair scores text, not the strong model's tokens: an answer is decoded, then read with the
guide's own tokenizer and prompt, so the strong model and the pair may tokenize differently.
"""
from __future__ import annotations

import numpy as np
import torch

from weaks2strong.models.causal_lm import ANSWER_END
from weaks2strong.models.lm_logprobs import score_candidates


class GuidePair:
    """``tuned`` and ``untuned`` share one tokenizer ``tok``; ``prompt`` renders a question the way
    the tuned model was trained on (``"Question: {question}\\nAnswer:"``)."""

    def __init__(self, tuned, untuned, tok, prompt: str, max_prompt_tokens: int = 256):
        self.tuned, self.untuned, self.tok, self.prompt = tuned.eval(), untuned.eval(), tok, prompt
        self.max_prompt_tokens = max_prompt_tokens

    def completion_ids(self, text: str, ended: bool) -> list[int]:
        """" " + the answer so far, and the answer end once the strong model ended it: the pair then
        also scores the decision to stop, which tells a complete answer from a cut one (an answer
        cut by the token budget is scored as the unfinished text it is)."""
        return self.tok(" " + text.strip() + (ANSWER_END if ended else ""), add_special_tokens=False).input_ids

    def prompt_ids(self, question: str) -> list[int]:
        ids = self.tok(self.prompt.format(question=question), add_special_tokens=True).input_ids
        return ids[-self.max_prompt_tokens:]

    @torch.inference_mode()
    def score_ids(self, prompt_ids: list[int], completions: list[list[int]]) -> np.ndarray:
        """log π_tuned(c|x) − log π_untuned(c|x) of each completion (C,), summed over its tokens; an
        empty completion scores 0 (nothing said yet)."""
        out = np.zeros(len(completions))
        keep = [i for i, c in enumerate(completions) if c]
        if keep:
            chosen = [completions[i] for i in keep]
            tuned, _ = score_candidates(self.tuned, prompt_ids, chosen)  # (C',)
            untuned, _ = score_candidates(self.untuned, prompt_ids, chosen)  # (C',)
            out[keep] = (tuned - untuned).double().cpu().numpy()
        return out

    def score_texts(self, question: str, texts: list[str], ended: list[bool]) -> np.ndarray:
        """The guide's score of each partial answer text (C,), read with the pair's tokenizer."""
        completions = [self.completion_ids(t, e) if t.strip() or e else [] for t, e in zip(texts, ended)]
        return self.score_ids(self.prompt_ids(question), completions)
