"""Who computes a stage: the store's lock for parallel jobs, rank 0 for DDP ranks; and the objects
fitted in this process, kept so that evaluate can label the test split without fitting them again."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Artifact, Store
from weaks2strong.runtime.errors import UserInputError

_FITTED: dict[tuple[str, str], Any] = {}


def remember(stage: str, key: str, fitted: Any) -> None:
    """Keep a fitted teacher, aggregator or student (by its stage artifact's key) for evaluate."""
    _FITTED[(stage, key)] = fitted


def recall(stage: str, key: str) -> Any | None:
    return _FITTED.get((stage, key))


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
