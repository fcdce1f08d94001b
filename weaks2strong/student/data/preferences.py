"""A LightningDataModule over preference pairs (chosen, rejected), each carrying its reference log-probs."""
from __future__ import annotations

import math

from weaks2strong.models.preference import PreferenceCollator, PreferenceRow
from weaks2strong.student.data.candidates import RowsDataModule


class PreferenceDataModule(RowsDataModule):
    """Training pairs and validation pairs, each row already carrying its reference log-probs."""

    def __init__(self, collator: PreferenceCollator, train_rows: list[PreferenceRow], val_rows: list[PreferenceRow],
                 batch_size: int = 4, seed: int = 0):
        for name, rows in (("train", train_rows), ("val", val_rows)):
            if any(math.isnan(r.ref_chosen) or math.isnan(r.ref_rejected) for r in rows):
                raise ValueError(f"{name} rows lack reference log-probs: pass them through with_reference first")
        super().__init__(collator, [r for r in train_rows if r.weight > 0], val_rows, batch_size, seed)
