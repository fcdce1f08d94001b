"""Wires a run from a composed Hydra config: one package per kind of task, each with its stage
files and a ``run.py`` whose ``run(cfg, task, store, run_dir)`` runs the path.

- ``classification/``: teach → (refine) → aggregate → distill → evaluate.
- ``generation/``: teach (propose, pool, score) → aggregate → distill → (align) → evaluate.
- ``preference/``: teach and aggregate (classification's) → align (DPO) → evaluate.
- ``search/``: guide → answers → evaluate (``cfg.search`` set, on a generation task).
- ``common/``: what they share: config slices, ``cached_stage``, the table layout, the DPO trainer.

Every stage before evaluate receives the task with its test split sealed (``Task.without_test``):
choices are made on val, and the test split is read once, by evaluate, for the reported number.

This package is the only code that sees the config: it turns each slice into plain constructor
calls with ``hydra.utils.instantiate``. Each stage reads and writes artifacts in the store (keyed
by a hash of its inputs and config slice), so a rerun skips what is done.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from weaks2strong.pipeline.classification.run import run as run_classification
from weaks2strong.pipeline.common.config import build
from weaks2strong.pipeline.common.stage import forget_fitted
from weaks2strong.pipeline.generation.run import run as run_generation
from weaks2strong.pipeline.preference.run import run as run_preference
from weaks2strong.pipeline.search.run import run as run_search
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Store
from weaks2strong.runtime.checks import align_problem
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.runtime.launch import link_scheduler_logs
from weaks2strong.runtime.schema import validate
from weaks2strong.tasks import Task

log = logging.getLogger(__name__)

__all__ = ["RUNS", "run"]

# each path's run, by the task's kind ("search" when cfg.search is set); each run checks first that
# the config and the process group suit its path
RUNS = {"classification": run_classification, "generation": run_generation, "preference": run_preference,
        "search": run_search}


def run(cfg: DictConfig) -> dict | None:
    """The whole run. Returns the metrics on rank 0, None on the other ranks of a multi-process run."""
    if distributed.is_main():
        link_scheduler_logs(Path(cfg.paths.output_dir))
    validate(cfg)  # a bad value (e.g. a sweep job's, which the pre-check did not see) fails in one line, first
    mismatch = align_problem(cfg)  # an alignment the student cannot take, before any stage runs
    if mismatch:
        raise UserInputError(mismatch)
    distributed.init_process_group()
    run_dir = Path(distributed.broadcast(str(Path(cfg.paths.output_dir).resolve())))  # rank 0's run dir
    store = Store(cfg.paths.cache_dir, run_dir=run_dir if distributed.is_main() else None)  # records what it used
    task: Task = build(cfg.task, "task", _convert_="all")
    log.info("task %s: %s", task.name, task.sizes())
    kind = "search" if cfg.get("search") is not None else getattr(task, "kind", "classification")
    try:
        return RUNS.get(kind, run_classification)(cfg, task, store, run_dir)  # a task of no known kind: classes
    finally:
        forget_fitted()  # the run's models go with it: a sweep's process holds one run's, not every run's
