"""A LightningDataModule over (text[, text pair], soft target, weight) rows, tokenized once, padded per batch."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from weaks2strong.models.batching import LengthBucketBatches, _Rows, pad_batch, row_length


class TargetsDataModule(pl.LightningDataModule):
    """Train rows carry soft targets (N, K) and weights (N,); eval rows carry gold labels.

    Reading tasks pass ``*_pairs`` (the passage, the options): the tokenizer encodes each row as a
    text pair (``[CLS] text [SEP] pair [SEP]``), truncating the longer member first.
    ``encode_for_predict`` gives a loader for ``trainer.predict``.
    """

    def __init__(self, tokenizer, train_texts: list[str], train_targets: np.ndarray, train_weights: np.ndarray,
                 val_texts: list[str], val_labels: np.ndarray, max_length: int = 128, batch_size: int = 32,
                 eval_batch_size: int = 128, seed: int = 0, num_workers: int = 0, bucket_by_length: bool = True,
                 train_pairs: list[str] | None = None, val_pairs: list[str] | None = None):
        super().__init__()
        self.bucket_by_length = bucket_by_length
        self.tokenizer, self.max_length, self.seed, self.num_workers = tokenizer, max_length, seed, num_workers
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        k = train_targets.shape[1]
        self.train = _Rows(self._encode(train_texts, train_pairs), train_targets.astype(np.float32),
                           train_weights.astype(np.float32))
        self.val = _Rows(self._encode(val_texts, val_pairs), np.eye(k, dtype=np.float32)[val_labels],
                         np.ones(len(val_texts), np.float32))

    def _encode(self, texts: list[str], pairs: list[str] | None = None) -> list[list[int]]:
        pairs = list(pairs) if pairs is not None else None
        return self.tokenizer(list(texts), pairs, truncation="longest_first", max_length=self.max_length).input_ids

    def encode_for_predict(self, texts: list[str], pairs: list[str] | None = None) -> DataLoader:
        k = self.train.targets.shape[1]
        rows = _Rows(self._encode(texts, pairs), np.zeros((len(texts), k), np.float32),
                     np.ones(len(texts), np.float32))
        return self._loader(rows, shuffle=False, batch_size=self.eval_batch_size)

    def _collate(self, batch):
        ids, targets, weights = zip(*batch)
        input_ids, mask = pad_batch(ids, self.tokenizer.pad_token_id)
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
        sampler = LengthBucketBatches([row_length(e) for e in self.train.encodings], self.batch_size, self.seed,
                                      num_replicas=world, rank=rank, by_length=self.bucket_by_length)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=self._collate, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False, batch_size=self.eval_batch_size)
