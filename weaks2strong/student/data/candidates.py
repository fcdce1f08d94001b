"""LightningDataModules over causal-LM rows: ``RowsDataModule`` (any rows through one collator) and
``CandidateDataModule`` (w2s_train's candidate answers with their targets, val's gold answers)."""
from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from weaks2strong.models.causal_lm import CandidateCollator, CandidateRow


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
    """Training rows (w2s_train's candidates and targets) and validation rows (val's gold answers)."""

    def __init__(self, tok, train_rows: list[CandidateRow], val_rows: list[CandidateRow], batch_size: int = 8,
                 max_prompt_tokens: int = 256, max_answer_tokens: int = 24, seed: int = 0,
                 every_candidate: bool = False):
        super().__init__(CandidateCollator(tok, max_prompt_tokens, max_answer_tokens, every_candidate),
                         [r for r in train_rows if r.weight > 0 and sum(r.probs) > 0], val_rows, batch_size, seed)
