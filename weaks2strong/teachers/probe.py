"""A frozen-encoder probe: mean-pooled embeddings from a zoo encoder + logistic regression.

``num_layers`` keeps only the first layers of the encoder, to make the teacher weak on purpose.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from weaks2strong.models import load_encoder
from weaks2strong.tasks import Task
from weaks2strong.zoo import pick_device, resolve_model


class EncoderProbe:
    def __init__(self, model: str = "minilm-l6", num_layers: int | None = None, C: float = 1.0,
                 batch_size: int = 64, max_length: int = 128, device: str = "auto", models_dir: str | None = None,
                 trust_remote_code: bool = False, progress: bool = True, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        self.model_name, self.num_layers, self.batch_size, self.max_length = model, num_layers, batch_size, max_length
        self.models_dir, self.trust_remote_code, self.progress = models_dir, trust_remote_code, progress
        self.device = pick_device(device)
        self.head = LogisticRegression(C=C, max_iter=2000, random_state=seed)
        self._encoder = None

    def _load(self):
        if self._encoder is None:
            from transformers import AutoTokenizer

            path = resolve_model(self.model_name, self.models_dir)
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
            enc = load_encoder(path, self.num_layers, self.trust_remote_code)
            self._encoder = (tok, enc.to(self.device).eval())
        return self._encoder

    @torch.inference_mode()
    def embed(self, texts: list[str], desc: str) -> np.ndarray:
        tok, enc = self._load()
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch
        out = np.zeros((len(texts), enc.config.hidden_size), dtype=np.float32)
        for start in tqdm(range(0, len(texts), self.batch_size), desc=desc, unit="batch", disable=not self.progress):
            rows = order[start : start + self.batch_size]
            batch = tok([texts[i] for i in rows], truncation=True, max_length=self.max_length, padding=True,
                        return_tensors="pt").to(self.device)
            hidden = enc(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            out[rows] = ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).float().cpu().numpy()  # (B, H)
        return out

    def fit(self, task: Task) -> None:
        self.head.fit(self.embed(task.texts("weak_train"), f"{self.model_name} probe: weak_train"),
                      task.labels("weak_train"))

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        probs = np.zeros((len(task.split(split)), task.num_classes))
        probs[:, self.head.classes_] = self.head.predict_proba(self.embed(task.texts(split), f"probe: {split}"))
        return probs
