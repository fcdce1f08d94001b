"""refine: the strong model relabels w2s_train and val in context from weakly labelled demonstrations
(``refine=in_context``); its labels join the run as one more teacher, ``refined``.

The artifact has a teacher's layout (labels.parquet), so the aggregator, evaluate and the reports
read it as they read any teacher's. Its key covers the teachers' labels and the refine config."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.pipeline.classification.aggregate import BEST_ON_VAL, best_teacher_by_val_accuracy
from weaks2strong.pipeline.classification.teach import checked_labels
from weaks2strong.pipeline.common.config import TEACHER_VOLATILE_KEYS, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage, on_main, recall_or_fit
from weaks2strong.pipeline.common.tables import split_frame, split_probs, task_key
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks import DEV_SPLITS, Task

log = logging.getLogger("weaks2strong.pipeline")
REFINED = "refined"  # the refined labels' teacher name


def refine(task: Task, labels: dict[str, Artifact], refine_cfg: DictConfig, store: Store) -> dict[str, Artifact]:
    """The teachers' labels plus, with ``refine.method=in_context``, the strong model's refined labels."""
    method = refine_cfg.get("method", "none") if refine_cfg else "none"
    if method == "none":
        return labels
    if REFINED in labels:
        raise UserInputError(f"teachers.{REFINED}: the name is the refined labels'; rename that teacher")
    key = stable_hash(task_key(task), {n: a.key for n, a in labels.items()},
                      config_slice(refine_cfg, TEACHER_VOLATILE_KEYS))
    found = cached_stage(store, "refine", key, lambda: on_main(lambda: _refine(task, labels, refine_cfg, store, key)),
                         reused="refine:")
    return {**labels, REFINED: found}


def weak_labels(task: Task, labels: dict[str, Artifact], source: str) -> tuple[str, np.ndarray]:
    """The teacher whose labels the demonstrations carry, and its hard w2s_train labels (-1: abstained)."""
    name = best_teacher_by_val_accuracy(task, labels) if source == BEST_ON_VAL else source
    if name not in labels:
        raise UserInputError(f"refine.weak_labels='{source}' is not one of this run's teachers "
                             f"({', '.join(labels)}) nor {BEST_ON_VAL}")
    probs = split_probs(labels[name], "labels", task, "w2s_train")  # (N, K), NaN rows where it abstained
    return name, np.where(np.isnan(probs).all(1), -1, np.nan_to_num(probs, nan=-1).argmax(1))


def _refine(task: Task, labels: dict[str, Artifact], refine_cfg: DictConfig, store: Store, key: str) -> None:
    started = time.perf_counter()
    refiner = fitted_refiner(task, labels, refine_cfg, key)
    rows = [split_frame(task, split, checked_labels(refiner.predict_proba(task, split), task, REFINED, split))
            for split in DEV_SPLITS]
    source = refiner.weak_source_
    with store.create("refine", key, {"task": task_key(task), "weak_labels": labels[source].key},
                      {"weak_labels": source, **config_slice(refine_cfg, TEACHER_VOLATILE_KEYS)}) as tmp:
        write_table(tmp / "labels.parquet", pd.concat(rows, ignore_index=True))
        write_json(tmp / "demos.json", {"weak_labels": source, "class_scale": refiner.class_scale_.tolist(), "sets": [
            [{"example_id": example_id, "answer": answer} for _, answer, example_id in demos]
            for demos in refiner.demo_sets_]})
        write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started})
    log.info("refine: %s relabelled %d examples in %.1f s from %s's weak labels", refiner.model_name,
             sum(len(r) for r in rows), time.perf_counter() - started, source)


def fitted_refiner(task: Task, labels: dict[str, Artifact], refine_cfg: DictConfig, key: str,
                   saved: dict | None = None):
    """The refiner with its demonstrations drawn (this process's, or drawn again: the draw is
    deterministic in the seed and the weak labels). ``labels`` are the teachers', without ``refined``;
    ``saved``: the refine artifact's demos.json, whose class scale spares scoring w2s_train again."""
    def fit():
        teachers = {n: a for n, a in labels.items() if n != REFINED}
        source, weak = weak_labels(task, teachers, refine_cfg.get("weak_labels", BEST_ON_VAL))
        refiner = build(refine_cfg.model, "refine.model")
        refiner.fit(task, "w2s_train", weak, class_scale=(saved or {}).get("class_scale"))
        refiner.weak_source_ = source
        return refiner

    return recall_or_fit("refine", key, fit)
