"""What every stage shares: building objects from config slices, cache keys, per-split tables, and
who computes a stage (the store's lock for parallel jobs; rank 0 for DDP ranks)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from weaks2strong import distributed
from weaks2strong.artifacts import Artifact, Store, frame_hash, stable_hash
from weaks2strong.errors import UserInputError
from weaks2strong.tasks import Task

# config keys that change how a stage runs but not what it computes
VOLATILE_KEYS = ("progress", "device", "models_dir")
# a teacher's inference batch size changes only its speed (the student's changes its training)
TEACHER_VOLATILE_KEYS = (*VOLATILE_KEYS, "batch_size")


def config_slice(cfg: DictConfig, ignore: tuple[str, ...] = VOLATILE_KEYS) -> dict:
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
    frame.insert(0, "example_id", task.split(split)["example_id"].to_numpy())
    frame.insert(0, "split", split)
    return frame


def split_rows(artifact: Artifact, table: str, task: Task, split: str) -> pd.DataFrame:
    """The rows of an artifact table for a split, in the split's order (the inverse of split_frame)."""
    frame = artifact.table(table).query(f"split == '{split}'").set_index("example_id")
    return frame.loc[task.split(split)["example_id"]]


def split_probs(artifact: Artifact, table: str, task: Task, split: str) -> np.ndarray:
    return split_rows(artifact, table, task, split)[prob_columns(task.num_classes)].to_numpy()


def task_key(task: Task) -> str:
    return stable_hash(task.name, task.classes, task.prompt, task.verbalizers,
                       {s: frame_hash(df) for s, df in task.splits.items()})


def make_loggers(logger_cfg: DictConfig | None, prefix: str) -> list:
    """Instantiate every configured logger with the stage name as metric prefix (``student/train/loss``)."""
    if not logger_cfg:
        return []
    return [instantiate(c)(prefix=prefix) for c in logger_cfg.values() if c is not None]


@contextmanager
def exclusive(store: Store, stage: str, key: str) -> Iterator[Artifact | None]:
    """Yield the artifact if it is done; otherwise the caller computes it while holding its lock, so
    a concurrent single-process job (parallel sweep jobs sharing teachers) waits and then reuses
    it. DDP ranks skip the lock: they follow rank 0's answer instead."""
    if distributed.world_size() > 1:
        yield agreed_find(store, stage, key)
        return
    with store.claim(stage, key) as found:
        yield found


def agreed_find(store: Store, stage: str, key: str) -> Artifact | None:
    """The finished artifact, if any; every rank goes by rank 0's answer, so none skips a stage the
    others compute."""
    found = store.find(stage, key)
    if not distributed.broadcast(found is not None):
        return None
    return found or store.find(stage, key)  # rank 0 found it; a rank on a slower file system looks again


def on_main(work) -> None:
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
