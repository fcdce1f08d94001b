"""Wires the stages teach → aggregate → distill → evaluate from a composed Hydra config.

This is the only module that sees the config: it turns each slice into plain constructor calls
with ``hydra.utils.instantiate``. Each stage reads and writes artifacts in the store (keyed by
a hash of its inputs and config slice), so a rerun skips what is done.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from weaks2strong import distributed
from weaks2strong.aggregate.base import check_probs
from weaks2strong.artifacts import Artifact, Store, frame_hash, stable_hash, write_json, write_table, write_text
from weaks2strong.errors import UserInputError
from weaks2strong.evaluate import classification_metrics
from weaks2strong.evaluate.report import flat_metrics, render_markdown, render_table, summarize
from weaks2strong.models import resolve_model
from weaks2strong.student import TargetsDataModule
from weaks2strong.tasks import Task
from weaks2strong.teachers import check_proba

log = logging.getLogger(__name__)
# config keys that change how a stage runs but not what it computes
VOLATILE_KEYS = ("progress", "device", "models_dir")
# a teacher's inference batch size changes only its speed (the student's changes its training)
TEACHER_VOLATILE_KEYS = (*VOLATILE_KEYS, "batch_size")


def _slice(cfg: DictConfig, ignore: tuple[str, ...] = VOLATILE_KEYS) -> dict:
    """The config slice that keys a stage, without keys that do not change its result."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in container.items() if k not in ignore} if isinstance(container, dict) else container


def build(cfg: DictConfig, key: str, **kwargs):
    """``instantiate`` with a one-line error naming the config key when the target cannot be built."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserInputError):  # the constructor's own one-line complaint
            raise err.__cause__ from None
        reason = str(err).strip().splitlines()[0].split(", set env var HYDRA_FULL_ERROR")[0]
        raise UserInputError(f"config {key}: cannot build {cfg.get('_target_', '?')}: {reason}") from None


def prob_columns(k: int) -> list[str]:
    return [f"p_{c}" for c in range(k)]


def split_frame(task: Task, split: str, probs: np.ndarray) -> pd.DataFrame:
    """(split, example_id, p_0..p_{K-1}) rows in the split's order: the layout of every artifact table."""
    frame = pd.DataFrame(probs, columns=prob_columns(task.num_classes))
    frame.insert(0, "example_id", task.splits[split]["example_id"].to_numpy())
    frame.insert(0, "split", split)
    return frame


def split_rows(artifact: Artifact, table: str, task: Task, split: str) -> pd.DataFrame:
    """The rows of an artifact table for a split, in the split's order (the inverse of split_frame)."""
    frame = artifact.table(table).query(f"split == '{split}'").set_index("example_id")
    return frame.loc[task.splits[split]["example_id"]]


def task_key(task: Task) -> str:
    return stable_hash(task.name, task.classes, task.prompt, task.verbalizers,
                       {s: frame_hash(df) for s, df in task.splits.items()})


# ---------------------------------------------------------------- teach
def teach(task: Task, teachers_cfg: DictConfig, store: Store) -> dict[str, Artifact]:
    """Fit each teacher on weak_train; label w2s_train and test. One artifact per teacher.

    In a launched multi-process run each rank labels its shard of the rows; rank 0 gathers, checks
    and writes."""
    if not teachers_cfg:
        raise UserInputError("teachers: no teacher configured; pick an ensemble, e.g. teachers=sentiment")
    out = {}
    for name, cfg in teachers_cfg.items():
        key = stable_hash(task_key(task), name, _slice(cfg, TEACHER_VOLATILE_KEYS))
        with _exclusive(store, "teach", key) as found:
            if found:
                log.info("teach: %s reused (%s)", name, found.path)
                out[name] = found
                continue
            out[name] = _label(task, name, cfg, store, key)
    return out


def _label(task: Task, name: str, cfg: DictConfig, store: Store, key: str) -> Artifact:
    """Fit one teacher, label this rank's shard, gather on rank 0, check and write."""
    teacher = build(cfg, f"teachers.{name}")
    started = time.perf_counter()
    teacher.fit(task)
    mine = task.shard(distributed.rank(), distributed.world_size()) if distributed.grouped() else task
    shards = distributed.gather({split: teacher.predict_proba(mine, split) for split in ("w2s_train", "test")})
    seconds = time.perf_counter() - started

    def write():
        rows = []
        for split in ("w2s_train", "test"):
            probs = check_proba(_unshard([shard[split] for shard in shards]), name, split,
                                len(task.splits[split]), task.num_classes)
            rows.append(split_frame(task, split, probs))
        with store.create("teach", key, {"task": task_key(task)},
                          {"teacher": name, **_slice(cfg, TEACHER_VOLATILE_KEYS)}) as tmp:
            write_table(tmp / "labels.parquet", pd.concat(rows, ignore_index=True))
            write_json(tmp / "timing.json", {"seconds": seconds, "ranks": len(shards)})
        log.info("teach: %s labelled %d examples in %.1f s on %d rank(s)", name, sum(len(r) for r in rows),
                 seconds, len(shards))

    _on_main(write)
    return store.find("teach", key)


def _unshard(parts: list[np.ndarray]) -> np.ndarray:
    """Undo ``Task.shard``: rank r labelled rows r, r+W, r+2W, ..."""
    out = np.empty((sum(len(p) for p in parts), parts[0].shape[1]))
    for r, part in enumerate(parts):
        out[r :: len(parts)] = part
    return out


@contextmanager
def _exclusive(store: Store, stage: str, key: str) -> Iterator[Artifact | None]:
    """Yield the artifact if it is done; otherwise the caller computes it while holding its lock, so
    a concurrent single-process job (parallel sweep jobs sharing teachers) waits and then reuses
    it. DDP ranks skip the lock: they follow rank 0's answer instead."""
    if distributed.world_size() > 1:
        yield _agreed_find(store, stage, key)
        return
    with store.claim(stage, key) as found:
        yield found


def _agreed_find(store: Store, stage: str, key: str) -> Artifact | None:
    """The finished artifact, if any; every rank goes by rank 0's answer, so none skips a stage the
    others compute."""
    return store.find(stage, key) if distributed.broadcast(store.find(stage, key) is not None) else None


def _on_main(work) -> None:
    """Run ``work`` (which writes an artifact) on rank 0 only; the other ranks wait for it, and fail
    with it if it fails."""
    error = None
    if distributed.is_main():
        try:
            work()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the other ranks hear of it
            error = err
    message = distributed.broadcast(None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        raise UserInputError(f"(rank {distributed.rank()}) rank 0 failed: {message}")


def teacher_probs(task: Task, labels: dict[str, Artifact], split: str) -> np.ndarray:
    """Stack the teachers' labels for a split into (N, T, K), in the split's row order."""
    return np.stack([split_probs(a, "labels", task, split) for a in labels.values()], axis=1)  # (N, T, K)


# ---------------------------------------------------------------- aggregate
def aggregate(task: Task, labels: dict[str, Artifact], aggregator_cfg: DictConfig, store: Store) -> Artifact:
    """Fit the aggregator on w2s_train's teacher labels; write soft targets, confidences and weights."""
    key = stable_hash([a.key for a in labels.values()], _slice(aggregator_cfg))
    with _exclusive(store, "aggregate", key) as found:
        if found:
            log.info("aggregate: reused (%s)", found.path)
            return found
        _on_main(lambda: _fit_aggregator(task, labels, aggregator_cfg, store, key))
        return store.find("aggregate", key)


def _fit_aggregator(task: Task, labels: dict[str, Artifact], aggregator_cfg: DictConfig, store: Store,
                    key: str) -> None:
    weighting = aggregator_cfg.get("weighting", "none")
    example_weights(np.ones(1), weighting)  # a bad aggregator.weighting fails before the fit, not after
    names = list(labels)
    probs = {split: teacher_probs(task, labels, split) for split in ("w2s_train", "test")}
    train = check_probs(probs["w2s_train"], names)
    model = build(aggregator_cfg.model, "aggregator.model")
    started = time.perf_counter()
    model.fit(train, names)
    frames, teachers_report = [], {}
    for split in ("w2s_train", "test"):
        result = model.predict(probs[split])
        frame = split_frame(task, split, result.posterior)
        frame["confidence"] = result.confidence
        frame["difficulty"] = result.difficulty if result.difficulty is not None else np.nan
        frame["weight"] = example_weights(result.confidence, weighting)
        frames.append(frame)
        teachers_report = result.teachers or teachers_report
    with store.create("aggregate", key, {n: a.key for n, a in labels.items()}, _slice(aggregator_cfg)) as tmp:
        write_table(tmp / "targets.parquet", pd.concat(frames, ignore_index=True))
        write_json(tmp / "teachers.json", teachers_report)
        write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started})
    log.info("aggregate: %s fitted in %.1f s", type(model).__name__, time.perf_counter() - started)


def example_weights(confidence: np.ndarray, weighting: str) -> np.ndarray:
    """How much each example counts in the student's loss (aggregator.weighting).

    ``none``: all 1. ``confidence``: the posterior's rescaled max probability, so an example the
    aggregator is unsure of (or finds hard) pulls the student less. ``confidence_squared``: sharper.
    """
    if weighting == "none":
        return np.ones_like(confidence)
    if weighting == "confidence":
        return np.clip(confidence, 0.0, 1.0)
    if weighting == "confidence_squared":
        return np.clip(confidence, 0.0, 1.0) ** 2
    raise UserInputError(f"aggregator.weighting='{weighting}' is not one of none, confidence, confidence_squared")


# ---------------------------------------------------------------- distill (student and ceiling)
def distill(task: Task, targets: Artifact | None, cfg: DictConfig, store: Store, run_dir: Path,
            stage: str) -> Artifact:
    """Train the strong student on soft targets (``targets``) or, with ``targets=None``, on gold
    labels (the ceiling). Writes test and w2s_train predictions and, optionally, the weights."""
    source = targets.key if targets is not None else "gold"
    key = stable_hash(task_key(task), source, _slice(cfg.student), _slice(cfg.trainer), cfg.seed)
    with _exclusive(store, stage, key) as found:
        if found:
            log.info("%s: reused (%s)", stage, found.path)
            return found
        return _train(task, targets, source, cfg, store, run_dir, stage, key)


def _train(task: Task, targets: Artifact | None, source: str, cfg: DictConfig, store: Store, run_dir: Path,
           stage: str, key: str) -> Artifact:
    k = task.num_classes
    if targets is None:
        soft, weights = np.eye(k)[task.labels("w2s_train")], np.ones(len(task.splits["w2s_train"]))
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
        with store.create(stage, key, {"task": task_key(task), "targets": source},
                          {"student": _slice(cfg.student), "trainer": _slice(cfg.trainer), "seed": cfg.seed}) as tmp:
            frames = [split_frame(task, split, p.double().numpy()) for split, p in predictions.items()]
            write_table(tmp / "predictions.parquet", pd.concat(frames, ignore_index=True))
            if cfg.student.get("save_weights", True):
                save_file({n: t.contiguous() for n, t in module.state_dict().items()}, tmp / "model.safetensors")
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started,
                                             "world_size": trainer.world_size})
        resume.unlink(missing_ok=True)
        log.info("%s: trained in %.1f s", stage, time.perf_counter() - started)

    _on_main(write)
    return store.find(stage, key)


def _resume_from(pointer: Path, ours: Path) -> str | None:
    """Continue an interrupted try of this stage: ``pointer`` names the last checkpoint the try
    left (in its own run dir); it is copied into ours and training resumes from it."""
    if not distributed.is_main():
        return None  # rank 0 decides, and broadcasts its answer
    previous = Path(json.loads(pointer.read_text())["last"]) if pointer.is_file() else None
    if previous is not None and previous.is_file():
        _check_checkpoint(previous, pointer)
        if previous != ours:
            ours.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(previous, ours)
    write_json(pointer, {"last": str(ours)})
    if ours.is_file():
        _check_checkpoint(ours, pointer)
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


def make_loggers(logger_cfg: DictConfig | None, prefix: str) -> list:
    """Instantiate every configured logger with the stage name as metric prefix (``student/train/loss``)."""
    if not logger_cfg:
        return []
    return [instantiate(c)(prefix=prefix) for c in logger_cfg.values() if c is not None]


def split_probs(artifact: Artifact, table: str, task: Task, split: str) -> np.ndarray:
    return split_rows(artifact, table, task, split)[prob_columns(task.num_classes)].to_numpy()


# ---------------------------------------------------------------- evaluate
def evaluate(task: Task, labels: dict[str, Artifact], targets: Artifact, ceiling: Artifact, student: Artifact,
             run_dir: Path) -> dict:
    """Score everything on test; PGR and misfit; metrics.json + report.md in the run dir."""
    y_test, y_train = task.labels("test"), task.labels("w2s_train")
    scores = {"teachers": {}, "aggregate": {}, "ceiling": {}, "student": {}}
    for name, artifact in labels.items():
        scores["teachers"][name] = {
            "test": classification_metrics(split_probs(artifact, "labels", task, "test"), y_test),
            "w2s_train": classification_metrics(split_probs(artifact, "labels", task, "w2s_train"), y_train)}
    for entry, artifact, table in (("aggregate", targets, "targets"), ("ceiling", ceiling, "predictions"),
                                   ("student", student, "predictions")):
        scores[entry] = {split: classification_metrics(split_probs(artifact, table, task, split), y)
                         for split, y in (("test", y_test), ("w2s_train", y_train))}
    train_targets = split_probs(targets, "targets", task, "w2s_train")
    metrics = summarize(scores, split_probs(student, "predictions", task, "w2s_train"), train_targets)
    metrics["task"] = {"name": task.name, "sizes": {s: len(df) for s, df in task.splits.items()}, "source": task.source}
    metrics["teacher_analysis"] = teacher_analysis(targets.record("teachers"), scores["teachers"])
    metrics["plots"] = make_plots(task, targets, run_dir)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    render_table(metrics)
    return metrics


def teacher_analysis(estimates: dict, scores: dict) -> dict:
    """The aggregator's estimate of each teacher's accuracy next to its true accuracy on w2s_train."""
    out = {}
    for name, score in scores.items():
        est = estimates.get(name, {})
        out[name] = {"true_accuracy_w2s_train": score["w2s_train"]["accuracy_where_answered"],
                     "estimated_accuracy": est.get("accuracy"),
                     "estimated_interval": [est.get("accuracy_low"), est.get("accuracy_high")]}
    return out


def make_plots(task: Task, targets: Artifact, run_dir: Path) -> list[str]:
    """Teacher confusion heatmaps (when the aggregator estimates them) and a reliability diagram."""
    from weaks2strong.aggregate import plots

    folder = run_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = [str(plots.plot_reliability(split_probs(targets, "targets", task, "test"), task.labels("test"),
                                       folder / "aggregate_reliability_test.png", title="Aggregate posterior, test"))]
    teachers = targets.record("teachers")
    if teachers and all("confusion" in t for t in teachers.values()):
        names, confusion, low, high = plots.teacher_arrays(teachers)
        made.append(str(plots.plot_teacher_confusions(confusion, low, high, folder / "teacher_confusions.png",
                                                      teacher_names=names, class_names=task.classes)))
    return made


# ---------------------------------------------------------------- the whole run
def run(cfg: DictConfig) -> dict | None:
    """The whole run. Returns the metrics on rank 0, None on the other ranks of a multi-process run."""
    distributed.init_process_group()
    run_dir = Path(distributed.broadcast(str(Path(cfg.paths.output_dir).resolve())))  # rank 0's run dir
    store = Store(cfg.paths.cache_dir)
    task: Task = build(cfg.task, "task", _convert_="all")
    log.info("task %s: %s", task.name, {s: len(df) for s, df in task.splits.items()})
    labels = teach(task, cfg.get("teachers") or {}, store)
    targets = aggregate(task, labels, cfg.aggregator, store)
    ceiling = distill(task, None, cfg, store, run_dir, stage="ceiling")
    student = distill(task, targets, cfg, store, run_dir, stage="student")
    if not distributed.is_main():
        return None
    metrics = evaluate(task, labels, targets, ceiling, student, run_dir)
    for logger in make_loggers(cfg.get("logger"), "eval"):
        logger.log_metrics(flat_metrics(metrics))
        if hasattr(logger, "log_image"):  # W&B shows the plots beside the numbers
            logger.log_image(key="plots", images=metrics["plots"])
        logger.finalize("success")
    write_json(run_dir / "artifacts.json", {
        "teach": {n: str(a.path) for n, a in labels.items()}, "aggregate": str(targets.path),
        "ceiling": str(ceiling.path), "student": str(student.path)})
    return metrics
