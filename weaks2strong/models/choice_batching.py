"""A LightningDataModule over multiple-choice rows: C (first, option) text pairs, a soft target (C,)
and a weight per row, tokenized once, padded per batch to (B, C, T). The multiple-choice
counterpart of ``TargetsDataModule`` (same keywords, same batching)."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from weaks2strong.errors import UserInputError
from weaks2strong.models.batching import LengthBucketBatches, _Rows


class ChoicesDataModule(pl.LightningDataModule):
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
        super().__init__()
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

    def _collate(self, batch):
        ids, targets, weights = zip(*batch)  # ids: B rows of C token-id lists
        width = max(len(x) for row in ids for x in row)
        input_ids = torch.full((len(ids), self.num_choices, width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(ids), self.num_choices, width), dtype=torch.long)  # (B, C, T)
        for i, row in enumerate(ids):
            for j, x in enumerate(row):
                input_ids[i, j, : len(x)] = torch.tensor(x)
                mask[i, j, : len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "targets": torch.tensor(np.stack(targets)),
                "weights": torch.tensor(np.array(weights))}

    def _loader(self, rows: _Rows, shuffle: bool, batch_size: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, collate_fn=self._collate,
                          num_workers=self.num_workers, generator=generator)

    def train_dataloader(self) -> DataLoader:
        # the batch sampler shards itself across DDP ranks (the trainer runs with use_distributed_sampler=False)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if not self.bucket_by_length and world == 1:
            return self._loader(self.train, shuffle=True, batch_size=self.batch_size)
        lengths = [max(len(x) for x in row) for row in self.train.encodings]  # a row is as long as its longest pair
        sampler = LengthBucketBatches(lengths, self.batch_size, self.seed, num_replicas=world, rank=rank,
                                      by_length=self.bucket_by_length)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=self._collate, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False, batch_size=self.eval_batch_size)
