"""The DataModule of a head over frozen encoder features (the ``probe_mpnet`` student): rows of cached
features, indexed a whole batch at a time."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler


class _FeatureRows(Dataset):
    """Rows indexed a whole batch at a time (a list of indices), so an epoch costs a few tensor
    gathers instead of one Python call and one collate per row."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, weights: np.ndarray):
        self.features = torch.as_tensor(np.asarray(features, dtype=np.float32))  # (N, H)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))  # (N, K)
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float32))  # (N,)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(rows, dtype=torch.long)
        return {"features": self.features[index], "targets": self.targets[index], "weights": self.weights[index]}


class FeaturesDataModule(pl.LightningDataModule):
    """Train rows: (features (N, H), soft targets (N, K), weights (N,)); val rows: features and gold
    labels (one-hot targets, unit weights). Batches are ``{"features", "targets", "weights"}`` dicts.

    Train batches are shuffled by a generator seeded once per fit: the order differs between epochs
    and is the same for every fit with the same seed. Under DDP every rank sees every row (a head
    over cached features needs no sharding; the loss's global normaliser keeps the gradient right).
    """

    def __init__(self, train_features: np.ndarray, train_targets: np.ndarray, train_weights: np.ndarray,
                 val_features: np.ndarray, val_labels: np.ndarray, batch_size: int = 256,
                 eval_batch_size: int = 1024, seed: int = 0):
        super().__init__()
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.num_classes = np.asarray(train_targets).shape[1]
        self.train = _FeatureRows(train_features, train_targets, train_weights)
        self.val = _FeatureRows(val_features, np.eye(self.num_classes, dtype=np.float32)[np.asarray(val_labels)],
                                np.ones(len(val_features), np.float32))

    @property
    def in_dim(self) -> int:
        return self.train.features.shape[1]

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return self._loader(self.train, RandomSampler(self.train, generator=generator), self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, SequentialSampler(self.val), self.eval_batch_size)

    def predict_loader(self, features: np.ndarray) -> DataLoader:
        """Rows in order, for ``predict_proba`` or ``trainer.predict`` (zero targets, unit weights)."""
        rows = _FeatureRows(features, np.zeros((len(features), self.num_classes), np.float32),
                            np.ones(len(features), np.float32))
        return self._loader(rows, SequentialSampler(rows), self.eval_batch_size)

    @staticmethod
    def _loader(rows: _FeatureRows, order, batch_size: int) -> DataLoader:
        # batch_size=None: the sampler hands the dataset whole batches of indices (no per-row collate)
        return DataLoader(rows, batch_size=None, sampler=BatchSampler(order, batch_size, drop_last=False))
