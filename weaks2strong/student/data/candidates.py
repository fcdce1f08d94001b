"""LightningDataModules over causal-LM rows: ``RowsDataModule`` (any rows through one collator) and
``CandidateDataModule`` (w2s_train's candidate answers with their targets, val's gold answers)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from weaks2strong.models.batching import LengthBucketBatches
from weaks2strong.models.causal_lm import CandidateCollator, CandidateRow, encode_row


class RowsDataModule(pl.LightningDataModule):
    """Training rows (shuffled, seeded) and validation rows through one collator; ``loader`` for any
    rows in order (prediction)."""

    def __init__(self, collate: Callable, train_rows: list, val_rows: list, batch_size: int, seed: int = 0):
        super().__init__()
        self.collate, self.train_rows, self.val_rows = collate, train_rows, val_rows
        self.batch_size, self.seed = batch_size, seed

    def loader(self, rows: list) -> DataLoader:
        return DataLoader(rows, batch_size=self.batch_size, collate_fn=self.collate)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_rows, batch_size=self.batch_size, shuffle=True, generator=generator,
                          collate_fn=self.collate)

    def val_dataloader(self):
        return self.loader(self.val_rows)


class CandidateDataModule(RowsDataModule):
    """Training rows (w2s_train's candidates and targets) and validation rows (val's gold answers).

    ``share_prompt``: batches hold each prompt once for all its candidates (``CandidateCollator``).
    ``bucket_by_length``: training batches of similar lengths (``LengthBucketBatches``, sharded across
    DDP ranks), and validation and prediction in length order, so that little of a batch is padding."""

    def __init__(self, tok, train_rows: list[CandidateRow], val_rows: list[CandidateRow], batch_size: int = 8,
                 max_prompt_tokens: int = 256, max_answer_tokens: int = 24, seed: int = 0,
                 every_candidate: bool = False, share_prompt: bool = False, bucket_by_length: bool = False,
                 eval_batch_size: int | None = None):
        collate = CandidateCollator(tok, max_prompt_tokens, max_answer_tokens, every_candidate, share_prompt)
        super().__init__(collate, [r for r in train_rows if r.weight > 0 and sum(r.probs) > 0], val_rows,
                         batch_size, seed)
        self.bucket_by_length = bucket_by_length
        self.eval_batch_size = eval_batch_size or batch_size  # validation and prediction: no gradients to hold

    def loader(self, rows: list[CandidateRow]) -> DataLoader:
        """Any rows (validation, prediction), ``eval_batch_size`` at a time; bucketed, in batches of like
        lengths, each carrying its rows' places (``row_index``), by which ``predict_proba`` restores their order."""
        size = self.eval_batch_size
        if not self.bucket_by_length:
            return DataLoader(rows, batch_size=size, collate_fn=self.collate)
        order = np.argsort(self._lengths(rows), kind="stable")
        batches = [order[i:i + size].tolist() for i in range(0, len(order), size)]
        return DataLoader(list(enumerate(rows)), batch_sampler=batches, collate_fn=self._collate_placed)

    def _collate_placed(self, items: list[tuple[int, CandidateRow]]) -> dict[str, torch.Tensor]:
        return {**self.collate([row for _, row in items]), "row_index": torch.tensor([i for i, _ in items])}

    def _lengths(self, rows: list[CandidateRow]) -> list[int]:
        """Tokens of each row's prompt and longest candidate, as the collator cuts them."""
        encoded = [encode_row(self.collate.tok, r, self.collate.max_prompt_tokens, self.collate.max_answer_tokens)
                   for r in rows]
        return [len(prompt) + max(map(len, answers), default=0) for prompt, answers in encoded]

    def train_dataloader(self):
        if not self.bucket_by_length:
            return super().train_dataloader()
        # the batch sampler shards itself across DDP ranks (the trainer runs with use_distributed_sampler=False)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = LengthBucketBatches(self._lengths(self.train_rows), self.batch_size, self.seed,
                                      num_replicas=world, rank=rank)
        return DataLoader(self.train_rows, batch_sampler=sampler, collate_fn=self.collate)

