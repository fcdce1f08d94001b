"""distill: fine-tune the strong student on the aggregated targets (or, for the ceiling, on gold)."""
from __future__ import annotations

import json
import logging
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from safetensors.torch import save_file

from weaks2strong import distributed
from weaks2strong.artifacts import Artifact, Store, stable_hash, write_json, write_table
from weaks2strong.errors import UserInputError
from weaks2strong.zoo import resolve_model
from weaks2strong.pipeline.common import (
    config_slice,
    exclusive,
    make_loggers,
    on_main,
    prob_columns,
    split_frame,
    split_rows,
    task_key,
)
from weaks2strong.student import TargetsDataModule
from weaks2strong.tasks import Task

log = logging.getLogger("weaks2strong.pipeline")


def distill(task: Task, targets: Artifact | None, cfg: DictConfig, store: Store, run_dir: Path,
            stage: str) -> Artifact:
    """Train the strong student on soft targets (``targets``) or, with ``targets=None``, on gold
    labels (the ceiling). Writes test and w2s_train predictions and, optionally, the weights."""
    source = targets.key if targets is not None else "gold"
    key = stable_hash(task_key(task), source, config_slice(cfg.student), config_slice(cfg.trainer), cfg.seed)
    with exclusive(store, stage, key) as found:
        if found:
            log.info("%s: reused (%s)", stage, found.path)
            return found
        return _train(task, targets, source, cfg, store, run_dir, stage, key)


def _train(task: Task, targets: Artifact | None, source: str, cfg: DictConfig, store: Store, run_dir: Path,
           stage: str, key: str) -> Artifact:
    k = task.num_classes
    if targets is None:
        soft, weights = np.eye(k)[task.labels("w2s_train")], np.ones(len(task.split("w2s_train")))
    else:
        table = split_rows(targets, "targets", task, "w2s_train")
        soft, weights = table[prob_columns(k)].to_numpy(), table["weight"].to_numpy()
    started = time.perf_counter()
    module, trainer, data = _build_student(task, soft, weights, cfg, run_dir, stage)
    resume = store.root / stage / f".{key}.resume.json"  # names the checkpoint an interrupted try left
    checkpoint = distributed.broadcast(_resume_from(resume, run_dir / "checkpoints" / stage / "last.ckpt"))
    trainer.fit(module, datamodule=data, ckpt_path=checkpoint)
    # every rank predicts every row (the loaders are not sharded); rank 0 writes
    predictions = {split: torch.cat(trainer.predict(module, data.encode_for_predict(*task.encoder_inputs(split))))
                   for split in ("w2s_train", "test")}

    def write():
        sliced = {"student": config_slice(cfg.student), "trainer": config_slice(cfg.trainer), "seed": cfg.seed}
        with store.create(stage, key, {"task": task_key(task), "targets": source}, sliced) as tmp:
            frames = [split_frame(task, split, p.double().numpy()) for split, p in predictions.items()]
            write_table(tmp / "predictions.parquet", pd.concat(frames, ignore_index=True))
            if cfg.student.get("save_weights", True):
                save_file({n: t.contiguous() for n, t in module.state_dict().items()}, tmp / "model.safetensors")
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started,
                                             "world_size": trainer.world_size})
        resume.unlink(missing_ok=True)
        log.info("%s: trained in %.1f s", stage, time.perf_counter() - started)

    on_main(write)
    return store.find(stage, key)


def _resume_from(pointer: Path, ours: Path) -> str | None:
    """Continue an interrupted try of this stage: ``pointer`` names the last checkpoint the try
    left (in its own run dir); it is copied into ours and training resumes from it."""
    if not distributed.is_main():
        return None  # rank 0 decides, and broadcasts its answer
    previous = Path(json.loads(pointer.read_text())["last"]) if pointer.is_file() else None
    if previous is not None and previous.is_file() and previous != ours:
        _check_checkpoint(previous, pointer)  # before copying, so the error names the file the try left
        ours.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(previous, ours)
    elif ours.is_file():
        _check_checkpoint(ours, pointer)
    write_json(pointer, {"last": str(ours)})
    if ours.is_file():
        log.info("resuming from %s", ours)
        return str(ours)
    return None


def _check_checkpoint(path: Path, pointer: Path) -> None:
    """A Lightning checkpoint is a zip (torch.save); check every member's CRC before resuming from it."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        bad = str(err)
    if bad:
        raise UserInputError(f"checkpoint {path} is corrupt or truncated ({bad}); delete it and {pointer} "
                             f"to train this stage from the start")


def _build_student(task: Task, soft: np.ndarray, weights: np.ndarray, cfg: DictConfig, run_dir: Path, stage: str):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from transformers import AutoTokenizer

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    path = resolve_model(cfg.student.encoder, cfg.paths.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.student.model.get("trust_remote_code", False))
    module = instantiate(cfg.student.model, encoder_path=path, num_classes=task.num_classes)
    (train_texts, train_pairs), (test_texts, test_pairs) = task.encoder_inputs("w2s_train"), task.encoder_inputs("test")
    data = TargetsDataModule(tokenizer, train_texts, soft, weights, test_texts, task.labels("test"),
                             max_length=cfg.student.max_length, batch_size=cfg.student.batch_size, seed=cfg.seed,
                             bucket_by_length=cfg.student.get("bucket_by_length", True),
                             train_pairs=train_pairs, val_pairs=test_pairs)
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints" / stage, save_last=True, save_top_k=0)
    # our batch sampler shards itself across ranks, and every rank predicts every row
    trainer = instantiate(cfg.trainer, logger=make_loggers(cfg.get("logger"), stage), callbacks=[checkpoints],
                          default_root_dir=str(run_dir), use_distributed_sampler=False)
    return module, trainer, data
