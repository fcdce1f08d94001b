"""Who computes a stage: the store's lock for parallel jobs, rank 0 for DDP ranks; and the objects
fitted in this process, kept so that evaluate can label the test split without fitting them again.

``cached_stage`` is how every stage runs: reuse the finished artifact (logging "<what> reused
(<path>)"), or compute it under the lock (also when a file of the artifact no longer matches its
checksum: ``Store.find`` warns, naming the file, and the new artifact replaces the bad one).
``recall_or_fit`` is how every stage gets back a fitted object: this process's, or fitted again
(deterministic in its config and rows)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Artifact, Store
from weaks2strong.runtime.errors import UserInputError

log = logging.getLogger("weaks2strong.pipeline")
_FITTED: dict[tuple[str, str], Any] = {}


def remember(stage: str, key: str, fitted: Any) -> None:
    """Keep a fitted teacher, aggregator or student (by its stage artifact's key) for evaluate."""
    _FITTED[(stage, key)] = fitted


def forget_fitted() -> None:
    """Drop every object this process fitted. ``pipeline.run`` calls it when a run ends: a process that
    runs many (a sweep's jobs under the basic launcher, the ledger's cells) would otherwise hold every
    run's models (the Gemma ledger held 23.3 GiB after 16 runs). A later run that needs one fits it again
    from its saved weights, or deterministically from its config."""
    _FITTED.clear()


def recall(stage: str, key: str) -> Any | None:
    return _FITTED.get((stage, key))


def recall_or_fit(stage: str, key: str, fit: Callable[[], Any], keep: bool = True) -> Any:
    """The object this process fitted for (stage, key), or ``fit()`` now (remembered, unless ``keep``
    is false: an object a caller copies or wraps before use)."""
    found = recall(stage, key)
    if found is None:
        found = fit()
        if keep:
            remember(stage, key, found)
    return found


def cached_stage(store: Store, stage: str, key: str, compute: Callable[[], Any], *, reused: str | None = None,
                 main_only: bool = False) -> Artifact:
    """The artifact of (stage, key): the finished one (logged as "<reused> reused (<path>)" when
    ``reused`` names it), or ``compute()`` writes it (``store.create(stage, key, ...)``) while this
    process holds its lock; then it is read back.

    Under DDP every rank calls ``compute`` (a stage that computes on rank 0 alone wraps its work in
    ``on_main``), and every rank goes by rank 0's answer on whether the artifact is done
    (``exclusive``). ``main_only``: a stage that rank 0 alone runs (evaluate) takes the lock only."""
    with (store.claim(stage, key) if main_only else exclusive(store, stage, key)) as found:
        if found is not None:
            if reused is not None:
                log.info("%s reused (%s)", reused, found.path)
            return found
        compute()
        return store.find(stage, key)


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


def saved_weights(artifact: Artifact, stage: str) -> dict:
    """The weights a reused stage saved, to answer test with; one line on how to get them when it saved none."""
    from safetensors.torch import load_file

    weights = artifact.path / "model.safetensors"
    if not weights.is_file():
        raise UserInputError(f"{stage} {artifact.path} has no model.safetensors to answer the test split with "
                             f"(student.save_weights=false and the stage was reused); rerun with "
                             f"student.save_weights=true, or delete {artifact.path} to train it again")
    return load_file(weights)
