"""aggregate: fit the aggregator on the teachers' w2s_train labels; write soft targets and weights
for w2s_train and val (evaluate asks the fitted aggregator for test, ``fitted_aggregator``)."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.aggregate.base import check_probs
from weaks2strong.pipeline.classification.teach import teacher_probs
from weaks2strong.pipeline.common.config import aggregator_anchor, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage, on_main, recall_or_fit
from weaks2strong.pipeline.common.tables import split_frame
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.runtime.schema import WEIGHTINGS
from weaks2strong.tasks import DEV_SPLITS, Task

log = logging.getLogger("weaks2strong.pipeline")
BEST_ON_VAL = "best_on_val"  # aggregator.model.teacher: pick the single teacher on val
ANCHOR = "none"  # aggregator.anchor where the config sets none: unanchored


def aggregate_labels(task: Task, labels: dict[str, Artifact], aggregator_cfg: DictConfig, store: Store) -> Artifact:
    """Fit the aggregator on w2s_train's teacher labels; write soft targets, confidences and weights."""
    key = stable_hash([a.key for a in labels.values()], config_slice(aggregator_cfg))
    return cached_stage(store, "aggregate", key, lambda: on_main(
        lambda: _fit_aggregator(task, labels, aggregator_cfg, store, key)), reused="aggregate:")


def _fit_aggregator(task: Task, labels: dict[str, Artifact], aggregator_cfg: DictConfig, store: Store,
                    key: str) -> None:
    weighting = aggregator_cfg.get("weighting", "none")
    example_weights(np.ones(1), weighting, np.ones((1, 2)) / 2)  # a bad weighting fails before the fit
    started = time.perf_counter()
    model = fitted_aggregator(task, labels, aggregator_cfg, key)
    frames, teachers_report = [], {}
    for split in DEV_SPLITS:
        frame, report = targets_frame(task, split, model, teacher_probs(task, labels, split), weighting,
                                      aggregator_cfg.get("uncovered_weight", 1.0))
        frames.append(frame)
        teachers_report = report or teachers_report
    with store.create("aggregate", key, {n: a.key for n, a in labels.items()}, config_slice(aggregator_cfg)) as tmp:
        write_table(tmp / "targets.parquet", pd.concat(frames, ignore_index=True))
        write_json(tmp / "teachers.json", teachers_report)
        write_json(tmp / "selection.json", getattr(model, "selection_", None) or {})  # select=val's table
        write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started})
    log.info("aggregate: %s fitted in %.1f s", type(model).__name__, time.perf_counter() - started)


def fitted_aggregator(task: Task, labels: dict[str, Artifact], aggregator_cfg: DictConfig, key: str):
    """The aggregator fitted on w2s_train's teacher labels (this process's, or fitted again: the fit is
    deterministic in its seed and the labels)."""
    def fit():
        chosen = {}
        if aggregator_cfg.model.get("teacher") == BEST_ON_VAL:
            chosen["teacher"] = best_teacher_by_val_accuracy(task, labels)
            log.info("aggregate: the single teacher chosen on val is %s", chosen["teacher"])
        model = build(aggregator_cfg.model, "aggregator.model", **chosen)
        probs, gold = anchored_rows(task, labels, aggregator_anchor(aggregator_cfg, ANCHOR), model)
        if gold is None:
            model.fit(check_probs(probs, list(labels)), list(labels))
        else:
            model.fit(check_probs(probs, list(labels)), list(labels), gold=gold)
        return model

    return recall_or_fit("aggregate", key, fit)


def anchored_rows(task: Task, labels: dict[str, Artifact], anchor: str, model) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows the aggregator is fitted on and their known classes (-1 = unknown).

    ``anchor: val``: w2s_train's rows plus val's, val's gold observed (semi-supervised), so held-out
    truth pins the confusions and the class prior. weak_train's gold stays out: the teachers were
    fitted there, so their answers on it are optimistic. ``anchor: none``: w2s_train alone."""
    train = teacher_probs(task, labels, "w2s_train")  # (N, T, K)
    if anchor == "none":
        return train, None
    if anchor != "val":
        raise UserInputError(f"aggregator.anchor='{anchor}' is not one of none, val")
    if not getattr(model, "supports_gold", False):  # declared by the model (aggregate/base.py LabelModel)
        raise UserInputError(f"aggregator.anchor=val: {type(model).__name__} cannot use gold labels; "
                             "set aggregator.anchor=none")
    val = teacher_probs(task, labels, "val")
    gold = np.concatenate([np.full(len(train), -1), task.labels("val")]).astype(np.int64)
    return np.concatenate([train, val]), gold


def best_teacher_by_val_accuracy(task: Task, labels: dict[str, Artifact]) -> str:
    """The teacher whose val labels are the most accurate (an abstention counts as a uniform guess)."""
    from weaks2strong.evaluate import classification_metrics

    val = teacher_probs(task, labels, "val")  # (N, T, K)
    accuracy = {name: classification_metrics(val[:, t], task.labels("val"))["accuracy"]
                for t, name in enumerate(labels)}
    return max(accuracy, key=accuracy.get)


def targets_frame(task: Task, split: str, model, probs: np.ndarray, weighting: str,
                  uncovered_weight: float = 1.0) -> tuple[pd.DataFrame, dict]:
    """The aggregate's rows for a split: posterior, confidence, difficulty, weight.

    ``uncovered_weight`` (aggregator.uncovered_weight) multiplies the weight of a row no teacher
    answered: its target is the aggregator's prior, not evidence. 0 trains on covered rows only, as
    WRENCH's end models do (sms in benchmarks/w2s_table.py: 60% of rows uncovered, and the prior-target
    student fell below majority vote's, whose uncovered targets are uniform)."""
    result = model.predict(probs)
    frame = split_frame(task, split, result.posterior)
    frame["confidence"] = result.confidence
    frame["difficulty"] = result.difficulty if result.difficulty is not None else np.nan
    weight = example_weights(result.confidence, weighting, result.posterior)  # (N,)
    uncovered = np.isnan(probs).all(axis=(1, 2))  # (N,) every teacher abstained
    frame["weight"] = np.where(uncovered, weight * float(uncovered_weight), weight)
    return frame, result.teachers


def example_weights(confidence: np.ndarray, weighting: str, posterior: np.ndarray) -> np.ndarray:
    """How much each example counts in the student's loss (aggregator.weighting).

    ``none``: all 1. ``confidence``: the posterior's rescaled max probability, so an example the
    aggregator is unsure of (or finds hard) pulls the student less. ``confidence_squared``: sharper.
    ``confidence_balanced``: confidence, then rescaled per class so that the weighted class mass
    equals the posterior's own class mass. Confidence weighting alone shifts it towards the class
    the teachers are surer of (SST-2, seed 0: negatives are 41% of the posterior's mass, 39% of the
    weighted mass, 44% of the gold), and across aggregators the student's accuracy tracked its
    targets' class lean (r = -0.91, ``benchmarks/targets_vs_student.py``); on SST-2 (3 seeds) the
    rebalanced student scored 0.7878 against 0.7875, no measurable effect.
    """
    if weighting == "none":
        return np.ones_like(confidence)
    if weighting == "confidence":
        return np.clip(confidence, 0.0, 1.0)
    if weighting == "confidence_squared":
        return np.clip(confidence, 0.0, 1.0) ** 2
    if weighting == "confidence_balanced":
        weight = np.clip(confidence, 0.0, 1.0)  # (N,)
        wanted = posterior.mean(0)  # (K,) the class mass the targets carry
        factor = np.ones(posterior.shape[1])  # (K,) per-class multipliers, found by raking
        for _ in range(200):
            w = weight * (posterior @ factor)  # (N,) an example is scaled by its soft classes' factors
            got = (w[:, None] * posterior).sum(0) / max(w.sum(), 1e-12)  # (K,) weighted class mass
            factor *= wanted / np.maximum(got, 1e-12)
        return weight * (posterior @ factor)
    raise UserInputError(f"aggregator.weighting='{weighting}' is not one of {', '.join(WEIGHTINGS)}")
