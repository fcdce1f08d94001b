"""Batching of tokenized rows: the row dataset, length-bucketed batches (DDP-sharded) and per-batch padding,
shared by the encoder students' DataModules (``weaks2strong/student/data/``)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


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
