"""The frozen-feature student (``student=probe_mpnet``): a linear (or small MLP) head over the
mean-pooled features of a frozen encoder, trained on the aggregate's soft targets and confidence
weights with the fine-tuned students' losses (``SoftTargetModule``: soft_ce, logconf); the ceiling
is the same head on gold.

An encoder's features of an example do not depend on the split seed, the teachers or the aggregate,
so they are computed once per (encoder, max_length, example) and cached under
``<store root>/examples/`` (``weaks2strong.runtime.example_cache``); a fit then takes seconds, which makes
choosing the head's hyperparameters on val (``fit_probe_on_val``) cheap.

``probe`` is the pipeline's recipe; ``FeatureEncoder``/``encode_features``, ``fit_probe`` and
``fit_probe_on_val`` serve scripts that hold their own rows or feature arrays.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from weaks2strong.models.feature_head import FeatureHead
from weaks2strong.models.soft_target import SoftTargetModule, predict_proba
from weaks2strong.runtime.artifacts import stable_hash
from weaks2strong.runtime.example_cache import ExampleCache
from weaks2strong.student.base import StudentParts
from weaks2strong.student.data.features import FeaturesDataModule
from weaks2strong.tasks import Task

log = logging.getLogger(__name__)

POOLING = "mean_pool"
# tried in this order; a tie keeps the earlier setting
DEFAULT_GRID: dict[str, Sequence] = {"lr": (1e-3, 1e-2), "weight_decay": (0.0, 1e-2), "hidden": (0,)}
# what the recipe's grid may tune: the head's keywords and the AdamW optimizer's
HEAD_KEYS, OPTIMIZER_KEYS = ("hidden", "dropout"), ("lr", "weight_decay")


class FeatureEncoder:
    """Mean-pooled last hidden states of a frozen encoder, one (H,) row per example, read from the
    per-example cache where an earlier call (any split, any seed) computed them.

    Rows are a DataFrame with a ``text`` column (and ``text_pair`` on reading tasks, encoded as a
    tokenizer pair, as the fine-tuned student reads it) or a list of strings. The encoder is loaded
    only when some row is missing from the cache. ``last_computed`` counts the rows the last call
    had to encode.
    """

    def __init__(self, encoder_path: str, cache_dir: str | Path | None = None, max_length: int = 128,
                 batch_size: int = 64, device: str = "auto", trust_remote_code: bool = False,
                 progress: bool = True):
        from transformers import AutoConfig

        self.encoder_path, self.max_length, self.batch_size = str(encoder_path), max_length, batch_size
        self.device, self.trust_remote_code, self.progress = device, trust_remote_code, progress
        self.width = AutoConfig.from_pretrained(self.encoder_path, trust_remote_code=trust_remote_code).hidden_size
        # keyed by the encoder's folder name, not its path: the same zoo model under another models_dir shares it
        self.namespace = stable_hash("features", Path(self.encoder_path).name, max_length, POOLING)
        self.cache_dir = cache_dir
        self.last_computed = 0
        self._loaded = None

    def __call__(self, rows: pd.DataFrame | Sequence[str], desc: str = "features") -> np.ndarray:
        """(N, H) float32 features, in the rows' order."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame({"text": list(rows)})
        if self.cache_dir is None:
            self.last_computed = len(frame)
            return self._embed(frame, desc)
        # read afresh each call: the ceiling's recipe, in this process or another, may have added rows since
        cache = ExampleCache(self.cache_dir, self.namespace, self.width)
        values, self.last_computed = cache.fill(frame, lambda todo: self._embed(todo, desc))
        return values.astype(np.float32)

    def _load(self):
        if self._loaded is None:
            from transformers import AutoTokenizer

            from weaks2strong.models import load_encoder
            from weaks2strong.zoo import pick_device

            device = pick_device(self.device)
            tokenizer = AutoTokenizer.from_pretrained(self.encoder_path, trust_remote_code=self.trust_remote_code)
            encoder = load_encoder(self.encoder_path, trust_remote_code=self.trust_remote_code).to(device).eval()
            self._loaded = (tokenizer, encoder, device)
        return self._loaded

    @torch.inference_mode()
    def _embed(self, frame: pd.DataFrame, desc: str) -> np.ndarray:
        from tqdm.auto import tqdm

        from weaks2strong.models.classifier import mean_pool

        tokenizer, encoder, device = self._load()
        texts = frame["text"].tolist()
        pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
        lengths = [len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)]
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: little padding
        out = np.zeros((len(texts), self.width), dtype=np.float32)
        batches = range(0, len(texts), self.batch_size)
        for start in tqdm(batches, desc=desc, unit="batch", disable=not self.progress or not len(texts)):
            rows = order[start : start + self.batch_size]
            batch = tokenizer([texts[i] for i in rows], [pairs[i] for i in rows] if pairs else None,
                              truncation="longest_first", max_length=self.max_length, padding=True,
                              return_tensors="pt").to(device)
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            out[rows] = mean_pool(hidden, batch["attention_mask"]).float().cpu().numpy()  # (B, H)
        return out


def encode_features(rows: pd.DataFrame | Sequence[str], encoder_path: str, cache_dir: str | Path | None = None,
                    **encoder_kwargs) -> np.ndarray:
    """(N, H) features of ``rows`` (see ``FeatureEncoder``), cached per example under ``cache_dir``."""
    return FeatureEncoder(encoder_path, cache_dir, **encoder_kwargs)(rows)


class KeepBestOnVal(pl.Callback):
    """Keeps the module's state of the epoch with the best ``monitor`` (the first of equals) in
    memory and restores it when fitting ends: the head stops where val says, not at max_epochs."""

    def __init__(self, monitor: str = "val/acc"):
        self.monitor = monitor
        self.best_score, self.best_epoch, self._best_state = -float("inf"), -1, None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self._best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._best_state is not None:
            pl_module.load_state_dict(self._best_state)


def probe_module(in_dim: int, num_classes: int, *, lr: float, weight_decay: float, hidden: int = 0,
                 dropout: float = 0.0, loss: str = "soft_ce", aux_coef: float = 0.5,
                 aux_warmup_frac: float = 0.1) -> SoftTargetModule:
    """A ``SoftTargetModule`` over a ``FeatureHead``, trained by AdamW on the default schedule."""
    return SoftTargetModule(FeatureHead(in_dim, num_classes, hidden=hidden, dropout=dropout), num_classes,
                            optimizer=partial(torch.optim.AdamW, lr=lr, weight_decay=weight_decay), loss=loss,
                            aux_coef=aux_coef, aux_warmup_frac=aux_warmup_frac)


def fit_probe(train_x: np.ndarray, soft: np.ndarray, weights: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
              lr: float = 1e-2, weight_decay: float = 0.0, max_epochs: int = 30, hidden: int = 0,
              dropout: float = 0.0, seed: int = 0, loss: str = "soft_ce", batch_size: int = 256,
              aux_coef: float = 0.5, aux_warmup_frac: float = 0.1,
              keep_best: bool = True) -> tuple[SoftTargetModule, float]:
    """Train a head on (train_x (N, H), soft (N, K), weights (N,)) with a Lightning Trainer on the CPU,
    keeping the epoch with the best accuracy on (val_x (M, H), val_y (M,) gold class ids) (the last
    epoch with ``keep_best=False``).

    Returns (the module at that epoch, its val accuracy)."""
    pl.seed_everything(seed, verbose=False)  # the head's initialisation and dropout
    data = FeaturesDataModule(train_x, soft, weights, val_x, val_y, batch_size=batch_size, seed=seed)
    module = probe_module(data.in_dim, data.num_classes, lr=lr, weight_decay=weight_decay, hidden=hidden,
                          dropout=dropout, loss=loss, aux_coef=aux_coef, aux_warmup_frac=aux_warmup_frac)
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=None if keep_best else 0,
                         callbacks=[KeepBestOnVal("val/acc")] if keep_best else [])
    with one_thread():
        trainer.fit(module, datamodule=data)
        return module, accuracy(module, data.predict_loader(val_x), val_y)


@contextlib.contextmanager
def one_thread():
    """Torch on one CPU thread, then as before: a (256, 768) @ (768, K) step gains nothing from
    intra-op threads, and on a busy machine their synchronisation made each step ~200x slower
    (40 ms instead of 0.2 ms with two threads on two loaded cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def accuracy(module: SoftTargetModule, loader, labels: np.ndarray) -> float:
    return float((predict_proba(module, loader).argmax(-1).numpy() == np.asarray(labels)).mean())


@dataclass
class ProbeChoice:
    """The val-chosen head: its module, setting and val accuracy, and every setting tried."""

    module: SoftTargetModule
    setting: dict
    val_acc: float
    tried: list[tuple[dict, float]] = field(default_factory=list)


def grid_settings(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def fit_probe_on_val(train_x: np.ndarray, soft: np.ndarray, weights: np.ndarray, val_x: np.ndarray,
                     val_y: np.ndarray, *, grid: Mapping[str, Sequence] | None = None, **fixed) -> ProbeChoice:
    """``fit_probe`` for every setting of ``grid`` (keys: any ``fit_probe`` keyword; ``DEFAULT_GRID``
    when None), the other keywords ``fixed``; keeps the best val accuracy (ties: the first tried)."""
    best: ProbeChoice | None = None
    tried = []
    for setting in grid_settings(DEFAULT_GRID if grid is None else grid):
        module, val_acc = fit_probe(train_x, soft, weights, val_x, val_y, **{**fixed, **setting})
        tried.append((setting, val_acc))
        log.info("probe %s: val acc %.4f", setting, val_acc)
        if best is None or val_acc > best.val_acc:
            best = ProbeChoice(module, setting, val_acc)
    best.tried = tried
    return best


def probe(task: Task, soft: np.ndarray, weights: np.ndarray, encoder_path: str, model: Callable, data: Callable,
          net: dict, seed: int = 0, cache_dir: str | Path | None = None, max_length: int = 128,
          encode_batch_size: int = 64, grid: Mapping[str, Sequence] | None = None, select_epochs: int = 30,
          device: str = "auto") -> StudentParts:
    """The recipe: soft (N, K) targets and weights (N,) for w2s_train's rows; the features of
    w2s_train, val (and, when predicted, any split) come from the per-example cache under
    ``cache_dir`` (the store root).

    With a ``grid`` (keys among ``lr``, ``weight_decay`` of the AdamW optimizer and ``hidden``,
    ``dropout`` of the head), the setting is chosen on val first: each is trained as the trainer
    will train it (``select_epochs`` epochs, the last one kept, the data module's batch size) and
    the best val accuracy's replaces the config's.
    """
    encoder = FeatureEncoder(encoder_path, cache_dir, max_length=max_length, batch_size=encode_batch_size,
                             device=device, trust_remote_code=net.get("trust_remote_code", False))
    name = Path(encoder_path).name

    def features(split: str) -> np.ndarray:
        values = encoder(task.split(split), desc=f"{name} features: {split}")
        log.info("%s features of %s: %d of %d rows computed, the rest cached", name, split,
                 encoder.last_computed, len(values))
        return values

    train_x, val_x, val_y = features("w2s_train"), features("val"), task.labels("val")
    head = {"hidden": int(net.get("hidden", 0)), "dropout": float(net.get("dropout", 0.0))}
    optimizer = getattr(model, "keywords", {}).get("optimizer")
    if grid:
        head, tuned = _choose_on_val(grid, head, getattr(optimizer, "keywords", {}), getattr(model, "keywords", {}),
                                     getattr(data, "keywords", {}), train_x, soft, weights, val_x, val_y,
                                     select_epochs, seed)
        optimizer = partial(optimizer or torch.optim.AdamW, **tuned)
    pl.seed_everything(seed, verbose=False)  # the head starts as the chosen setting's did on val
    module = model(net=FeatureHead(encoder.width, task.num_classes, **head), num_classes=task.num_classes,
                   **({"optimizer": optimizer} if optimizer is not None else {}))
    datamodule = data(train_features=train_x, train_targets=soft, train_weights=weights, val_features=val_x,
                      val_labels=val_y, seed=seed)
    return StudentParts(module, datamodule, lambda t, split: datamodule.predict_loader(
        encoder(t.split(split), desc=f"{name} features: {split}")))


# build_student passes the store root (cfg.paths.cache_dir) to the recipes that declare this
probe.needs_cache_dir = True


def _choose_on_val(grid: Mapping[str, Sequence], head: dict, optimizer: Mapping, model: Mapping, data: Mapping,
                   train_x, soft, weights, val_x, val_y, epochs: int, seed: int) -> tuple[dict, dict]:
    """(head keywords, optimizer keywords) of the grid's best setting on val."""
    unknown = sorted(set(grid) - {*HEAD_KEYS, *OPTIMIZER_KEYS})
    if unknown:
        from weaks2strong.runtime.errors import UserInputError

        raise UserInputError(f"student.recipe.grid: cannot tune {', '.join(unknown)} (only "
                             f"{', '.join(HEAD_KEYS + OPTIMIZER_KEYS)})")
    fixed = {**head, **{k: optimizer[k] for k in OPTIMIZER_KEYS if k in optimizer},
             **{k: model[k] for k in ("loss", "aux_coef", "aux_warmup_frac") if k in model},
             **({"batch_size": data["batch_size"]} if "batch_size" in data else {})}
    choice = fit_probe_on_val(train_x, soft, weights, val_x, val_y, grid=grid, max_epochs=epochs, seed=seed,
                              keep_best=False, **{k: v for k, v in fixed.items() if k not in grid})
    log.info("probe: chose %s on val (acc %.4f) of %d settings", choice.setting, choice.val_acc, len(choice.tried))
    chosen = {**fixed, **choice.setting}
    return {k: chosen[k] for k in HEAD_KEYS}, {k: chosen[k] for k in OPTIMIZER_KEYS if k in chosen}
