"""distill: the stage that trains the strong student on the aggregated targets (or, for the
ceiling, on gold) with the recipe the config names (``student.recipe``); keys, artifacts, resume.

It predicts w2s_train and val; evaluate asks the trained module for test (``fitted_student``)."""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file

from weaks2strong.models import predict_proba
from weaks2strong.pipeline.common.config import build, config_slice, make_loggers, settings_for
from weaks2strong.pipeline.common.stage import cached_stage, on_main, recall_or_fit, remember
from weaks2strong.pipeline.common.tables import prob_columns, split_frame, split_rows, task_key
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_weights
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.student import StudentParts
from weaks2strong.tasks import DEV_SPLITS, Task
from weaks2strong.zoo import resolve_model

log = logging.getLogger("weaks2strong.pipeline")


def distill_key(task: Task, source: str, cfg: DictConfig) -> str:
    return stable_hash(task_key(task), source, config_slice(cfg.student), config_slice(cfg.trainer),
                       cfg.seeds.student)


def distill_classifier(task: Task, targets: Artifact | None, cfg: DictConfig, store: Store, run_dir: Path,
                       stage: str, adapters: bool = False) -> Artifact:
    """Train the strong student on soft targets (``targets``) or, with ``targets=None``, on gold
    labels (the ceiling). Writes w2s_train and val predictions and, optionally, the weights.

    ``adapters``: a LoRA student also keeps its adapters (``adapters.safetensors``, a few MB), for a
    later stage that starts from it (align) in another process. Not part of the key: the stage
    computes the same predictions either way."""
    source = targets.key if targets is not None else "gold"
    cfg = ceiling_config(cfg) if targets is None else settings_for(cfg, "student", ceiling=False)
    key = distill_key(task, source, cfg)
    return cached_stage(store, stage, key,
                        lambda: _train(task, targets, source, cfg, store, run_dir, stage, key, adapters),
                        reused=f"{stage}:")


def ceiling_config(cfg: DictConfig) -> DictConfig:
    """The ceiling is the student's recipe trained on gold with its own settings (``student.ceiling``,
    see ``settings_for``: a sweep of the student's cannot move PGR's denominator) and the plain loss
    (as in Burns et al.): a loss meant for weak labels (logconf) changes the student's row, not PGR's
    denominator."""
    cfg = settings_for(cfg, "student", ceiling=True)
    if cfg.student.model.get("loss", "soft_ce") == "soft_ce":
        return cfg
    plain = cfg.copy()
    plain.student.model.loss = "soft_ce"
    return plain


def soft_label_rows(task: Task, targets: Artifact | None) -> tuple[np.ndarray, np.ndarray]:
    """(soft targets (N, K), weights (N,)) for w2s_train: the aggregate's, or one-hot gold for the ceiling."""
    if targets is None:
        return np.eye(task.num_classes)[task.labels("w2s_train")], np.ones(len(task.split("w2s_train")))
    table = split_rows(targets, "targets", task, "w2s_train")
    return table[prob_columns(task.num_classes)].to_numpy(), table["weight"].to_numpy()


def build_classifier_student(task: Task, targets: Artifact | None, cfg: DictConfig) -> StudentParts:
    """Seed, then let the configured recipe assemble module and data (no config object reaches it)."""
    import pytorch_lightning as pl

    pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
    soft, weights = soft_label_rows(task, targets)
    recipe = build(cfg.student.recipe, "student.recipe")
    store_root = {"cache_dir": cfg.paths.cache_dir} if getattr(recipe.func, "needs_cache_dir", False) else {}
    return recipe(task=task, soft=soft, weights=weights,
                  encoder_path=resolve_model(cfg.student.encoder, cfg.paths.models_dir),
                  model=build(cfg.student.model, "student.model"), data=build(cfg.student.data, "student.data"),
                  net=OmegaConf.to_container(cfg.student.net, resolve=True), seed=cfg.seeds.student,
                  **store_root)


def _train(task: Task, targets: Artifact | None, source: str, cfg: DictConfig, store: Store, run_dir: Path,
           stage: str, key: str, adapters: bool = False) -> None:
    from pytorch_lightning.callbacks import ModelCheckpoint

    from weaks2strong.runtime.fsdp import shards_parameters

    started = time.perf_counter()
    parts = build_classifier_student(task, targets, cfg)
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints" / stage, save_last=True, save_top_k=0)
    # our batch sampler shards itself across ranks, and rank 0 alone predicts every row
    trainer = instantiate(cfg.trainer, logger=make_loggers(cfg.get("logger"), stage), callbacks=[checkpoints],
                          default_root_dir=str(run_dir), use_distributed_sampler=False)
    resume = store.root / stage / f".{key}.resume.json"  # names the checkpoint an interrupted try left
    checkpoint = distributed.broadcast(_resume_from(resume, run_dir / "checkpoints" / stage / "last.ckpt"))
    trainer.fit(parts.module, datamodule=parts.data, ckpt_path=checkpoint)
    save, sharded = cfg.student.get("save_weights", True), shards_parameters(trainer.strategy)
    # a collective under FSDP/DeepSpeed (every rank gathers its shard); the full state on rank 0
    state = trainer.strategy.lightning_module_state_dict() if save or sharded else None
    if sharded and distributed.is_main():  # rank 0 predicts alone, so with every parameter in one module
        parts = unsharded(task, targets, cfg, state, trainer.strategy.root_device)
    state = state if save else None
    remember(stage, key, parts)

    def write():
        predictions = {split: predict_proba(parts.module, parts.predict_loader(task, split)) for split in DEV_SPLITS}
        sliced = {"student": config_slice(cfg.student), "trainer": config_slice(cfg.trainer),
                  "seed": cfg.seeds.student}
        with store.create(stage, key, {"task": task_key(task), "targets": source}, sliced) as tmp:
            frames = [split_frame(task, split, p.double().numpy()) for split, p in predictions.items()]
            write_table(tmp / "predictions.parquet", pd.concat(frames, ignore_index=True))
            if state is not None:
                write_weights(tmp / "model.safetensors", state)
            elif adapters and lora_state(getattr(parts.module, "lm", None)):  # a causal LM's, with LoRA
                write_weights(tmp / "adapters.safetensors", lora_state(parts.module.lm))
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started,
                                             "world_size": trainer.world_size})
        resume.unlink(missing_ok=True)
        if not cfg.student.get("keep_checkpoint", False):
            # the finished stage is reused from its artifact, never resumed: its resume checkpoint
            # (weights and optimizer state, ~3x the weights) would only fill the disk of every sweep
            shutil.rmtree(run_dir / "checkpoints" / stage, ignore_errors=True)
            with contextlib.suppress(OSError):  # another stage's checkpoint may still be in it
                (run_dir / "checkpoints").rmdir()
        log.info("%s: trained in %.1f s", stage, time.perf_counter() - started)

    on_main(write)


def unsharded(task: Task, targets: Artifact | None, cfg: DictConfig, state: dict, device) -> StudentParts:
    """The student rebuilt in this process from the full state a sharded run (FSDP) gathered on rank 0.
    The trained module holds only this rank's shards, and its forward pass is a collective that
    the other ranks, gone on to the next stage, would never join."""
    parts = build_classifier_student(task, targets, cfg)
    parts.module.load_state_dict(state)
    parts.module.to(device)
    return parts


def lora_state(lm) -> dict:
    """The LoRA adapters' weights of ``lm`` (empty without adapters, or without an LM), keyed as
    ``lm.state_dict()`` keys them."""
    return {} if lm is None else {k: v for k, v in lm.state_dict().items() if "lora_" in k}


def fitted_student(task: Task, targets: Artifact | None, artifact: Artifact, cfg: DictConfig) -> StudentParts:
    """The module this process trained for ``artifact``, or (the stage was reused) the same recipe
    with the artifact's saved weights (or its LoRA adapters, see ``distill_classifier``)."""
    def fit():
        weights, adapters = artifact.path / "model.safetensors", artifact.path / "adapters.safetensors"
        if not weights.is_file() and not adapters.is_file():
            raise UserInputError(f"{artifact.stage} {artifact.path} has no model.safetensors to predict the test "
                                 f"split or to align with (it was trained with student.save_weights=false, before "
                                 f"align asked for its adapters); rerun with student.save_weights=true, or delete "
                                 f"{artifact.path} to train it again")
        parts = build_classifier_student(task, targets, cfg)
        if weights.is_file():
            parts.module.load_state_dict(load_file(weights))
            return parts
        saved = load_file(adapters)
        _, unexpected = parts.module.lm.load_state_dict(saved, strict=False)  # the pretrained weights stay
        if unexpected or lora_state(parts.module.lm).keys() != saved.keys():
            raise UserInputError(f"{adapters} does not fit student.model ({len(unexpected)} unexpected weights): "
                                 f"delete {artifact.path} to train the student again")
        return parts

    return recall_or_fit(artifact.stage, artifact.key, fit)


def test_predictions(task: Task, parts: StudentParts) -> np.ndarray:
    return predict_proba(parts.module, parts.predict_loader(task, "test")).double().numpy()


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


