"""The classification run: teach → (refine) → aggregate → distill (ceiling, student) → (align) → evaluate.

``align=verbalizer_dpo``: the causal-LM verbalizer student is then DPO'd on pairs from the aggregate
(``align.py``), after teacher forcing or, ``align.init=pretrained``, instead of it.

Every stage before evaluate receives the task with its test split sealed (``Task.without_test``):
choices are made on val, and the test split is read once, by evaluate, for the reported number."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from weaks2strong.evaluate.report import flat_metrics
from weaks2strong.pipeline.classification.aggregate import aggregate_labels
from weaks2strong.pipeline.classification.align import METHOD, align_verbalizers, aligning, check_verbalizers
from weaks2strong.pipeline.classification.distill import distill_classifier
from weaks2strong.pipeline.classification.evaluate import evaluate
from weaks2strong.pipeline.classification.refine import refine
from weaks2strong.pipeline.classification.teach import teach
from weaks2strong.pipeline.common.config import make_loggers
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Store, write_json
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks import Task


def run(cfg: DictConfig, task: Task, store: Store, run_dir: Path) -> dict | None:
    """The whole classification run. Returns the metrics on rank 0, None on the other ranks of a
    multi-process run."""
    method = cfg.get("align", {}).get("method", "none")
    if method not in ("none", METHOD):
        raise UserInputError(f"align={method} aligns a generation student (e.g. experiment=sciq_gen); "
                             f"task {task.name} is a classification task: use align=none, or align={METHOD} "
                             f"with student=gemma3")
    if aligning(cfg):
        if distributed.world_size() > 1:
            raise UserInputError(f"align={METHOD} runs in one process for now (trainer.devices=1)")
        check_verbalizers(task)  # before any stage: a word that cannot be one side of a pair
    dev = task.without_test()
    labels = teach(dev, cfg.get("teachers") or {}, store)
    labels = refine(dev, labels, cfg.get("refine"), store)  # + the strong model's refined labels, if asked
    targets = aggregate_labels(dev, labels, cfg.aggregator, store)
    ceiling = distill_classifier(dev, None, cfg, store, run_dir, stage="ceiling")
    student = distill_classifier(dev, targets, cfg, store, run_dir, stage="student", adapters=aligning(cfg))
    aligned = align_verbalizers(dev, targets, student, cfg, store, run_dir) if aligning(cfg) else None
    if not distributed.is_main():
        return None
    metrics = evaluate(task, dev, labels, targets, ceiling, student, cfg, store, run_dir, aligned)
    for logger in make_loggers(cfg.get("logger"), "eval"):
        logger.log_metrics(flat_metrics(metrics))
        if hasattr(logger, "log_image"):  # W&B shows the plots beside the numbers
            logger.log_image(key="plots", images=metrics["plots"])
        logger.finalize("success")
    write_json(run_dir / "artifacts.json", {
        "teach": {n: str(a.path) for n, a in labels.items()}, "aggregate": str(targets.path),
        "ceiling": str(ceiling.path), "student": str(student.path), "predict_test": metrics["predict_test"],
        **({"align": str(aligned.path)} if aligned is not None else {})})
    return metrics
