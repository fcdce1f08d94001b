"""A LightningDataModule over (text[, text pair], soft target, weight) rows, tokenized once, padded per batch."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class _Rows(Dataset):
    def __init__(self, encodings: list[list[int]], targets: np.ndarray, weights: np.ndarray):
        self.encodings, self.targets, self.weights = encodings, targets, weights

    def __len__(self) -> int:
        return len(self.encodings)

    def __getitem__(self, i: int):
        return self.encodings[i], self.targets[i], self.weights[i]


class LengthBucketBatches(Sampler[list[int]]):
    """Shuffled batches of similar-length rows, so padding (and wasted compute) stays small.

    Each epoch: shuffle, cut into pools of ``pool`` batches, sort each pool by length, batch it,
    shuffle the batches. Deterministic in (seed, epoch), like DistributedSampler: the trainer calls
    ``set_epoch``, so a run resumed from a checkpoint sees the same order. The ``group_by_length``
    idea of HF Trainer.

    Under DDP each global batch of ``batch_size * num_replicas`` rows is split between the ranks,
    so N ranks with ``batch_size`` B see exactly the batches one process with batch size N·B sees.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, pool: int = 50, num_replicas: int = 1,
                 rank: int = 0, by_length: bool = True):
        self.lengths, self.batch_size, self.seed, self.pool = np.asarray(lengths), batch_size, seed, pool
        self.num_replicas, self.rank, self.by_length = num_replicas, rank, by_length
        self.epoch = 0
        self.sampler = self  # Lightning calls set_epoch on ``batch_sampler.sampler``

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.num_replicas
        batches = []
        for start in range(0, len(order), size * self.pool):
            chunk = order[start : start + size * self.pool]
            if self.by_length:
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        for b in rng.permutation(len(batches)):
            rows = batches[b]
            if len(rows) < self.num_replicas:  # every rank needs a batch: repeat rows, as DistributedSampler pads
                rows = np.resize(rows, self.num_replicas)
            yield np.array_split(rows, self.num_replicas)[self.rank].tolist()

    def __len__(self) -> int:
        return -(-len(self.lengths) // (self.batch_size * self.num_replicas))


def row_length(encoding: list) -> int:
    """Tokens in a row: a list of ids, or (multiple choice) as long as its longest list of ids."""
    return max(map(len, encoding)) if encoding and isinstance(encoding[0], list) else len(encoding)


def pad_batch(ids: tuple[list, ...], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad B rows of ids to (B, T), or B rows of C id lists to (B, C, T); with the attention mask."""
    nested = bool(ids) and isinstance(ids[0][0], list)
    rows = [row if nested else [row] for row in ids]  # (B, C) lists of ids
    width = max(len(x) for row in rows for x in row)
    input_ids = torch.full((len(rows), len(rows[0]), width), pad_id, dtype=torch.long)  # (B, C, T)
    mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        for j, x in enumerate(row):
            input_ids[i, j, : len(x)] = torch.tensor(x)
            mask[i, j, : len(x)] = 1
    return (input_ids, mask) if nested else (input_ids[:, 0], mask[:, 0])


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
