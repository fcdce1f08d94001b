"""Wires the stages teach → (refine) → aggregate → distill → evaluate from a composed Hydra config.

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

from weaks2strong.evaluate.report import flat_metrics
from weaks2strong.pipeline.aggregate import aggregate
from weaks2strong.pipeline.config import build, make_loggers
from weaks2strong.pipeline.distill import distill
from weaks2strong.pipeline.evaluate import evaluate
from weaks2strong.pipeline.refine import refine
from weaks2strong.pipeline.teach import teach
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Store, write_json
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.runtime.launch import link_scheduler_logs
from weaks2strong.runtime.schema import validate
from weaks2strong.tasks import Task

log = logging.getLogger(__name__)

__all__ = ["aggregate", "distill", "evaluate", "refine", "run", "teach"]


def run(cfg: DictConfig) -> dict | None:
    """The whole run. Returns the metrics on rank 0, None on the other ranks of a multi-process run."""
    if distributed.is_main():
        link_scheduler_logs(Path(cfg.paths.output_dir))
    validate(cfg)  # a bad value (e.g. a sweep job's, which the pre-check did not see) fails in one line, first
    distributed.init_process_group()
    run_dir = Path(distributed.broadcast(str(Path(cfg.paths.output_dir).resolve())))  # rank 0's run dir
    store = Store(cfg.paths.cache_dir)
    task: Task = build(cfg.task, "task", _convert_="all")
    log.info("task %s: %s", task.name, task.sizes())
    if cfg.get("search") is not None:
        from weaks2strong.pipeline.search import run_search

        if getattr(task, "kind", "classification") != "generation" or distributed.world_size() > 1:
            raise UserInputError(f"search (weak-to-strong search) answers a generation task in one process; "
                                 f"task {task.name} is a {getattr(task, 'kind', 'classification')} task")
        return run_search(cfg, task, store, run_dir)
    if getattr(task, "kind", "classification") == "generation":
        from weaks2strong.pipeline.generation_eval import run_generation

        if not distributed.is_main() or distributed.world_size() > 1:
            raise UserInputError("the generation path runs in one process for now (trainer.devices=1)")
        return run_generation(cfg, task, store, run_dir)
    if getattr(task, "kind", "classification") == "preference":
        from weaks2strong.pipeline.preference import run_preference

        if not distributed.is_main() or distributed.world_size() > 1:
            raise UserInputError("the preference path runs in one process for now (trainer.devices=1)")
        if cfg.get("align", {}).get("method", "none") == "none":
            raise UserInputError(f"task {task.name} is a preference task: its students are DPO'd (align=dpo, "
                                 f"e.g. experiment=hh_harmless)")
        return run_preference(cfg, task, store, run_dir)
    if cfg.get("align", {}).get("method", "none") != "none":
        raise UserInputError(f"align={cfg.align.method} aligns a generation student (e.g. experiment=sciq_gen); "
                             f"task {task.name} is a classification task: use align=none")
    dev = task.without_test()
    labels = teach(dev, cfg.get("teachers") or {}, store)
    labels = refine(dev, labels, cfg.get("refine"), store)  # + the strong model's refined labels, if asked
    targets = aggregate(dev, labels, cfg.aggregator, store)
    ceiling = distill(dev, None, cfg, store, run_dir, stage="ceiling")
    student = distill(dev, targets, cfg, store, run_dir, stage="student")
    if not distributed.is_main():
        return None
    metrics = evaluate(task, dev, labels, targets, ceiling, student, cfg, store, run_dir)
    for logger in make_loggers(cfg.get("logger"), "eval"):
        logger.log_metrics(flat_metrics(metrics))
        if hasattr(logger, "log_image"):  # W&B shows the plots beside the numbers
            logger.log_image(key="plots", images=metrics["plots"])
        logger.finalize("success")
    write_json(run_dir / "artifacts.json", {
        "teach": {n: str(a.path) for n, a in labels.items()}, "aggregate": str(targets.path),
        "ceiling": str(ceiling.path), "student": str(student.path), "predict_test": metrics["predict_test"]})
    return metrics
