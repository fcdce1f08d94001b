"""A LightningDataModule over multiple-choice rows: C (first, option) text pairs, a soft target (C,)
and a weight per row, tokenized once, padded per batch to (B, C, T). The multiple-choice
counterpart of ``TargetsDataModule`` (same keywords, same batching)."""
from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader

from weaks2strong.models.batching import _Rows
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.student.data.targets import TargetsDataModule


class ChoicesDataModule(TargetsDataModule):
    """Train rows carry soft targets (N, C) and weights (N,); val rows carry gold labels (N,).

    Each row is ``firsts[i]`` (context + question) paired with each of ``options[i]`` (C strings):
    ``[CLS] first [SEP] option [SEP]``, truncated longest-first from the left, so an over-long
    first loses the start of its context before its question (which it ends with).
    ``encode_for_predict`` gives a loader for ``trainer.predict``.
    """

    def __init__(self, tokenizer, train_firsts: list[str], train_options: list[list[str]],
                 train_targets: np.ndarray, train_weights: np.ndarray, val_firsts: list[str],
                 val_options: list[list[str]], val_labels: np.ndarray, max_length: int = 256, batch_size: int = 16,
                 eval_batch_size: int = 32, seed: int = 0, num_workers: int = 0, bucket_by_length: bool = True):
        super(TargetsDataModule, self).__init__()  # the rows differ; batching, padding and loaders are shared
        self.tokenizer, self.max_length, self.seed, self.num_workers = tokenizer, max_length, seed, num_workers
        self.batch_size, self.eval_batch_size, self.bucket_by_length = batch_size, eval_batch_size, bucket_by_length
        self.num_choices = train_targets.shape[1]
        self.train = _Rows(self._encode(train_firsts, train_options), train_targets.astype(np.float32),
                           train_weights.astype(np.float32))
        self.val = _Rows(self._encode(val_firsts, val_options),
                         np.eye(self.num_choices, dtype=np.float32)[val_labels], np.ones(len(val_firsts), np.float32))

    def _encode(self, firsts: list[str], options: list[list[str]]) -> list[list[list[int]]]:
        """(N rows) -> N lists of C token-id lists."""
        if any(len(o) != self.num_choices for o in options):
            raise UserInputError(f"every multiple-choice row needs {self.num_choices} options (the targets' width)")
        firsts = [f for f in firsts for _ in range(self.num_choices)]  # (N*C,) each first once per option
        seconds = [o for row in options for o in row]  # (N*C,)
        side, self.tokenizer.truncation_side = self.tokenizer.truncation_side, "left"
        try:
            ids = self.tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_length).input_ids
        finally:
            self.tokenizer.truncation_side = side
        return [ids[i : i + self.num_choices] for i in range(0, len(ids), self.num_choices)]

    def encode_for_predict(self, firsts: list[str], options: list[list[str]]) -> DataLoader:
        rows = _Rows(self._encode(firsts, options), np.zeros((len(firsts), self.num_choices), np.float32),
                     np.ones(len(firsts), np.float32))
        return self._loader(rows, shuffle=False, batch_size=self.eval_batch_size)
