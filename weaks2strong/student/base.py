"""What a training recipe returns: the LightningModule, its DataModule, and a way to get a
prediction loader for any split (test included, once evaluate has unsealed it)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from weaks2strong.tasks import Task


@dataclass
class StudentParts:
    module: pl.LightningModule
    data: pl.LightningDataModule
    # (task, split) -> the split's rows; in its order, or batches that give their rows' places (``row_index``)
    predict_loader: Callable[[Task, str], DataLoader]
    tokenizer: Any = None  # a causal-LM recipe's, for a stage that scores its texts another way (DPO's pairs)
