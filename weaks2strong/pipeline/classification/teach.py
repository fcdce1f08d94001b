"""teach: fit each teacher on weak_train and label w2s_train and val (one artifact per teacher).

The test split is sealed here: evaluate asks the fitted teacher for its test labels (``fitted_teacher``).

A teacher that declares ``split_independent`` (it learns nothing from weak_train: lexicons, keyword
rules, a zero-shot prompted LM) has its answers cached per example (``example_cache.py``), so a new
split seed labels only the examples no earlier seed saw, and such a teacher is fitted only when it
has something to label."""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import TEACHER_VOLATILE_KEYS, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage, on_main, recall, recall_or_fit, remember
from weaks2strong.pipeline.common.tables import split_frame, split_probs, task_key
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.runtime.example_cache import ExampleCache
from weaks2strong.tasks import DEV_SPLITS, Task
from weaks2strong.teachers import check_proba

log = logging.getLogger("weaks2strong.pipeline")


def classification_teacher_key(task: Task, name: str, cfg: DictConfig) -> str:
    """A labelling teacher's key: the (sealed) task's rows and its config."""
    return stable_hash(task_key(task), name, config_slice(cfg, TEACHER_VOLATILE_KEYS))


def teach(task: Task, teachers_cfg: DictConfig, store: Store) -> dict[str, Artifact]:
    """Fit each teacher on weak_train; label w2s_train and val. One artifact per teacher.

    In a launched multi-process run each rank labels its shard of the rows; rank 0 gathers, checks
    and writes."""
    if not teachers_cfg:
        raise UserInputError("teachers: no teacher configured; pick an ensemble, e.g. teachers=sentiment")
    out = {}
    for name, cfg in teachers_cfg.items():
        key = classification_teacher_key(task, name, cfg)
        out[name] = cached_stage(store, "teach", key, lambda name=name, cfg=cfg, key=key: _label(
            task, name, cfg, store, key), reused=f"teach: {name}")
    return out


def _label(task: Task, name: str, cfg: DictConfig, store: Store, key: str) -> None:
    """Fit one teacher, label this rank's shard, gather on rank 0, check and write."""
    teacher = build(cfg, f"teachers.{name}")
    started = time.perf_counter()
    mine = task.shard(distributed.rank(), distributed.world_size()) if distributed.grouped() else task
    labelled = {}
    if is_split_independent(teacher):
        fit = _fit_once(teacher, task, key)
        cache = example_labels(store, name, cfg, task)
        answers = {}
        for split in DEV_SPLITS:
            answers[split], labelled[split] = cache.fill(mine.split(split), lambda rows, s=split: (
                fit().predict_proba(_only(mine, s, rows), s)))
    else:
        teacher.fit(task)
        remember("teach", key, teacher)
        answers = {split: teacher.predict_proba(mine, split) for split in DEV_SPLITS}
    shards = distributed.gather(answers)
    counts = distributed.gather(labelled)
    seconds = time.perf_counter() - started

    def write():
        rows = [split_frame(task, split, checked_labels(_unshard([s[split] for s in shards]), task, name, split))
                for split in DEV_SPLITS]
        n_rows = sum(len(r) for r in rows)
        fresh = sum(sum(c.values()) for c in counts) if any(counts) else n_rows
        with store.create("teach", key, {"task": task_key(task)},
                          {"teacher": name, **config_slice(cfg, TEACHER_VOLATILE_KEYS)}) as tmp:
            write_table(tmp / "labels.parquet", pd.concat(rows, ignore_index=True))
            write_json(tmp / "timing.json", {"seconds": seconds, "ranks": len(shards), "labelled": fresh,
                                             "from_example_cache": n_rows - fresh})
        log.info("teach: %s labelled %d examples (%d more from the per-example cache) in %.1f s on %d rank(s)",
                 name, fresh, n_rows - fresh, seconds, len(shards))

    on_main(write)


def is_split_independent(teacher) -> bool:
    """A teacher whose answer for an example does not depend on the split it is in (see the module doc)."""
    return bool(getattr(teacher, "split_independent", False))


def example_labels(store: Store, name: str, cfg: DictConfig, task: Task) -> ExampleCache:
    """The per-example cache of a split-independent teacher: keyed by its config and what it reads
    of the task besides the example (classes, prompt, verbalizers), never by the split."""
    namespace = stable_hash("teacher-labels", config_slice(cfg, TEACHER_VOLATILE_KEYS), task.classes,
                            task.prompt, task.verbalizers)
    return ExampleCache(store.root, namespace, task.num_classes)


def _fit_once(teacher, task: Task, key: str):
    """A function that fits ``teacher`` on its first call only (and remembers it for evaluate)."""
    done = []

    def fitted():
        if not done:
            teacher.fit(task)
            remember("teach", key, teacher)
            done.append(True)
        return teacher

    return fitted


def _only(task: Task, split: str, rows: pd.DataFrame) -> Task:
    """The task with ``split`` cut to ``rows`` (the ones the per-example cache lacks)."""
    return dataclasses.replace(task, splits={**task.splits, split: rows})


def checked_labels(probs: np.ndarray, task: Task, name: str, split: str) -> np.ndarray:
    return check_proba(probs, name, split, len(task.split(split)), task.num_classes)


def fitted_teacher(task: Task, name: str, cfg: DictConfig, key: str):
    """The teacher fitted by this process's teach stage, or (its labels came from the cache) the same
    teacher fitted again on weak_train: fitting is deterministic in the config and the rows."""
    def fit():
        log.info("evaluate: fitting teacher %s again to label the test split (teach was reused)", name)
        teacher = build(cfg, f"teachers.{name}")
        teacher.fit(task)
        return teacher

    return recall_or_fit("teach", key, fit)


def teacher_test_labels(task: Task, dev: Task, name: str, cfg: DictConfig, key: str, store: Store) -> np.ndarray:
    """(N, K) labels of the (unsealed) test split: from the per-example cache for a split-independent
    teacher (fitted only if some test example is new), else from the fitted teacher."""
    fitted = recall("teach", key)
    teacher = fitted if fitted is not None else build(cfg, f"teachers.{name}")
    if not is_split_independent(teacher):
        return fitted_teacher(dev, name, cfg, key).predict_proba(task, "test")
    fit = (lambda: fitted) if fitted is not None else _fit_once(teacher, dev, key)
    labels, _ = example_labels(store, name, cfg, task).fill(
        task.split("test"), lambda rows: fit().predict_proba(_only(task, "test", rows), "test"))
    return labels


def _unshard(parts: list[np.ndarray]) -> np.ndarray:
    """Undo ``Task.shard``: rank r labelled rows r, r+W, r+2W, ..."""
    out = np.empty((sum(len(p) for p in parts), parts[0].shape[1]))
    for r, part in enumerate(parts):
        out[r :: len(parts)] = part
    return out


def teacher_probs(task: Task, labels: dict[str, Artifact], split: str) -> np.ndarray:
    """Stack the teachers' labels for a split into (N, T, K), in the split's row order."""
    return np.stack([split_probs(a, "labels", task, split) for a in labels.values()], axis=1)  # (N, T, K)
