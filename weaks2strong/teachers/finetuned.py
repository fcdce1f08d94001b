"""A fine-tuned small encoder: the first ``num_layers`` of a zoo encoder, fine-tuned end to end on
``weak_train`` gold with Lightning (the same classifier the student uses, on one-hot targets).

Weak on purpose: few layers, short inputs, one or two epochs. Unlike the frozen probe it adapts the
encoder, so its errors differ from the probe's and from the student's.
"""
from __future__ import annotations

import os
from functools import partial

import numpy as np
import torch

from weaks2strong.models import EncoderClassifier, SoftTargetModule
from weaks2strong.student.data.targets import TargetsDataModule
from weaks2strong.tasks import Task
from weaks2strong.zoo import resolve_model


class FineTunedEncoder:
    def __init__(self, model: str = "minilm-l6", num_layers: int | None = 2, epochs: int = 2, lr: float = 1e-4,
                 batch_size: int = 32, max_length: int = 128, accelerator: str = "auto", models_dir: str | None = None,
                 trust_remote_code: bool = False, progress: bool = True, seed: int = 0):
        self.model_name, self.num_layers, self.epochs, self.lr = model, num_layers, epochs, lr
        self.batch_size, self.max_length, self.accelerator = batch_size, max_length, accelerator
        self.models_dir, self.trust_remote_code = models_dir, trust_remote_code
        self.progress, self.seed = progress, seed
        self._module = self._data = self._trainer = None

    def _make_trainer(self):
        import pytorch_lightning as pl

        # one device per process: under torchrun each rank fits on its own GPU
        on_gpu = torch.cuda.is_available() and self.accelerator in ("auto", "gpu", "cuda")
        devices = [int(os.environ.get("LOCAL_RANK", 0))] if on_gpu else 1
        return pl.Trainer(max_epochs=self.epochs, accelerator=self.accelerator, devices=devices, logger=False,
                          enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                          enable_progress_bar=self.progress, limit_val_batches=0)

    def fit(self, task: Task) -> None:
        import pytorch_lightning as pl
        from transformers import AutoTokenizer

        pl.seed_everything(self.seed, verbose=False)
        path = resolve_model(self.model_name, self.models_dir)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        net = EncoderClassifier(str(path), task.num_classes, num_layers=self.num_layers,
                                trust_remote_code=self.trust_remote_code)
        self._module = SoftTargetModule(net, task.num_classes, optimizer=partial(torch.optim.AdamW, lr=self.lr))
        texts, pairs = task.encoder_inputs("weak_train")
        labels = task.labels("weak_train")
        onehot = np.eye(task.num_classes)[labels]
        self._data = TargetsDataModule(tokenizer, texts, onehot, np.ones(len(labels)), texts[:1], labels[:1],
                                       max_length=self.max_length, batch_size=self.batch_size, seed=self.seed,
                                       train_pairs=pairs, val_pairs=pairs[:1] if pairs else None)
        self._trainer = self._make_trainer()
        self._trainer.fit(self._module, datamodule=self._data)

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        if self._module is None:
            raise RuntimeError("FineTunedEncoder.predict_proba called before fit")
        batches = self._trainer.predict(self._module, self._data.encode_for_predict(*task.encoder_inputs(split)))
        return torch.cat(batches).double().numpy()
