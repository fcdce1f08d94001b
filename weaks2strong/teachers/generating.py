"""Teachers for generation tasks: each proposes candidate answers and scores any candidate set.

Protocol: ``fit(task)`` learns from weak_train (or draws its shots there); ``propose(task, split)``
returns, per example, [greedy answer, sampled answers...] (empty strings allowed: the pipeline drops
them); ``score(task, split, candidates)`` returns, per example, the teacher's log-score of each
candidate (LMs: the candidate's summed token log-probability, with its token count, so the caller
can length-normalise; retrieval: the log of its similarity mass).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from weaks2strong.models.causal_lm import (
    ANSWER_END,
    CandidateRow,
    SequenceLikelihoodModule,
    encode_prompts,
    generate_answers,
    load_causal_lm,
    prefix_cache,
)
from weaks2strong.models.lm_logprobs import score_candidates
from weaks2strong.student.data.candidates import CandidateDataModule
from weaks2strong.tasks.generation import GenerationTask, normalize_answer
from weaks2strong.zoo import pick_device, resolve_model


def demonstrations(task: GenerationTask, shots: list[tuple[str, str]]) -> str:
    """The k-shot prefix: each shot as the task's prompt, its answer and a blank line."""
    return "".join(f"{task.prompt.format(question=q)} {a}{ANSWER_END}\n" for q, a in shots)


class LMGenerator:
    """A causal LM that answers k-shot (``shots`` drawn from weak_train) or, with ``epochs`` > 0,
    after fine-tuning on weak_train's gold answers with the student's own recipe (teacher forcing,
    q = 1, w = 1), zero-shot. ``train_part``/``train_parts`` fine-tune on a disjoint part of
    weak_train, so two such teachers err differently."""

    def __init__(self, model: str, shots: int = 5, samples: int = 2, temperature: float = 0.7,
                 max_new_tokens: int = 12, batch_size: int = 16, epochs: int = 0, lr: float = 5e-5,
                 train_part: int = 0, train_parts: int = 1, train_batch_size: int = 8, max_prompt_tokens: int = 512,
                 seed: int = 0, device: str = "auto", models_dir: str | None = None, trust_remote_code: bool = False,
                 progress: bool = True):
        if not 0 <= train_part < train_parts:
            raise ValueError(f"train_part={train_part} must be in [0, train_parts={train_parts})")
        self.model_name, self.shots, self.samples, self.temperature = model, shots, samples, temperature
        self.max_new_tokens, self.batch_size, self.epochs, self.lr = max_new_tokens, batch_size, epochs, lr
        self.train_part, self.train_parts, self.train_batch_size = train_part, train_parts, train_batch_size
        self.max_prompt_tokens, self.seed, self.progress = max_prompt_tokens, seed, progress
        self.models_dir, self.trust_remote_code = models_dir, trust_remote_code
        self.device = pick_device(device)
        self._lm = None

    def fit(self, task: GenerationTask) -> None:
        self._lm = load_causal_lm(resolve_model(self.model_name, self.models_dir), self.trust_remote_code)
        weak = task.split("weak_train")
        rng = np.random.default_rng(self.seed)
        if self.epochs > 0:
            self.shots_ = []
            part = rng.permutation(len(weak))[self.train_part :: self.train_parts]
            self._finetune(task, weak.iloc[part])
        else:
            rows = rng.choice(len(weak), size=min(self.shots, len(weak)), replace=False)
            self.shots_ = [(weak["question"].iloc[i], weak["answer"].iloc[i]) for i in rows]
        self._lm[1].to(self.device).eval()

    @property
    def fitted(self):
        """(tokenizer, model) after ``fit``: the tuned half of a search guide pair (weaks2strong.search)."""
        if self._lm is None:
            raise RuntimeError(f"{self.model_name}: call fit(task) first")
        return self._lm

    def _finetune(self, task: GenerationTask, rows) -> None:
        import pytorch_lightning as pl

        tok, lm = self._lm
        train = [CandidateRow(task.prompt.format(question=q), [a], [1.0])
                 for q, a in zip(rows["question"], rows["answer"])]
        data = CandidateDataModule(tok, train, [], batch_size=self.train_batch_size, seed=self.seed)
        module = SequenceLikelihoodModule(lm, optimizer=lambda p: torch.optim.AdamW(p, lr=self.lr, weight_decay=0.01))
        pl.seed_everything(self.seed, workers=True, verbose=False)
        accelerator = "gpu" if str(self.device).startswith("cuda") else "cpu"
        trainer = pl.Trainer(max_epochs=self.epochs, accelerator=accelerator,
                             devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                             num_sanity_val_steps=0, limit_val_batches=0, enable_progress_bar=self.progress)
        trainer.fit(module, datamodule=data)

    def propose(self, task: GenerationTask, split: str) -> list[list[str]]:
        tok, lm = self._lm
        return generate_answers(lm, tok, task.prompts(split), self.max_new_tokens, self.batch_size, self.samples,
                                self.temperature, self.seed, self.max_prompt_tokens,
                                prefix=demonstrations(task, self.shots_),
                                desc=f"{self.model_name} answers {split}" if self.progress else None)

    @torch.inference_mode()
    def score(self, task: GenerationTask, split: str,
              candidates: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per example: (summed log-prob (C,), token count (C,)) of " " + candidate + newline after the
        prompt, the prompt's key/value cache shared by the example's candidates (and the k-shot
        demonstrations' cache, computed once, shared by every example)."""
        tok, lm = self._lm
        out = []
        head, encoded = encode_prompts(tok, demonstrations(task, self.shots_), task.prompts(split),
                                       self.max_prompt_tokens)
        shared = prefix_cache(lm, head)
        for ids, cands in tqdm(list(zip(encoded, candidates)), desc=f"{self.model_name} scores {split}",
                               unit="q", disable=not self.progress):
            cand_ids = [tok(" " + c + ANSWER_END, add_special_tokens=False).input_ids for c in cands]
            if not cand_ids:
                out.append((np.zeros(0), np.zeros(0)))
                continue
            logp, count = score_candidates(lm, ids, cand_ids, prefix_cache=shared, prefix_length=len(head))
            out.append((logp.double().cpu().numpy(), count.double().cpu().numpy()))
        return out


class RetrievalTeacher:
    """The answer of the most similar weak_train question (TF-IDF cosine), its similarity as
    confidence: cheap, and wrong in another way than the LMs. A candidate's score is the similarity
    mass of the ``neighbours`` nearest questions whose normalised answer equals it, plus ``floor``."""

    def __init__(self, neighbours: int = 5, floor: float = 0.05, ngram_max: int = 2):
        self.neighbours, self.floor, self.ngram_max = neighbours, floor, ngram_max

    def fit(self, task: GenerationTask) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        weak = task.split("weak_train")
        self.vectorizer_ = TfidfVectorizer(ngram_range=(1, self.ngram_max), sublinear_tf=True, stop_words="english")
        self.matrix_ = self.vectorizer_.fit_transform(weak["question"])
        self.answers_ = weak["answer"].tolist()

    def _neighbours(self, task: GenerationTask, split: str) -> tuple[np.ndarray, np.ndarray]:
        sims = (self.vectorizer_.transform(task.questions(split)) @ self.matrix_.T).toarray()  # (N, W)
        order = np.argsort(-sims, axis=1, kind="stable")[:, : self.neighbours]  # (N, k)
        return order, np.take_along_axis(sims, order, 1)

    def propose(self, task: GenerationTask, split: str) -> list[list[str]]:
        order, _ = self._neighbours(task, split)
        return [[self.answers_[j] for j in row[:1]] for row in order]

    def score(self, task: GenerationTask, split: str, candidates: list[list[str]]) -> list[tuple[np.ndarray, None]]:
        order, sims = self._neighbours(task, split)
        out = []
        for row, sim, cands in zip(order, sims, candidates):
            mass = {}
            for j, s in zip(row, sim):
                key = normalize_answer(self.answers_[j])
                mass[key] = mass.get(key, 0.0) + max(float(s), 0.0)
            out.append((np.log(np.array([self.floor + mass.get(normalize_answer(c), 0.0) for c in cands])), None))
        return out
