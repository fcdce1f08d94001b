"""evaluate: the only stage that reads the test split. It asks the fitted teachers, aggregator,
ceiling, student and aligned student for their test predictions (an artifact of its own), scores
every split, and writes PGR, misfit, metrics.json, report.md and plots."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from weaks2strong.evaluate import classification_metrics, error_correlation, estimates_summary, teacher_analysis
from weaks2strong.evaluate.metrics import pgr
from weaks2strong.evaluate.report import render_markdown, render_table, summarize
from weaks2strong.pipeline.classification.aggregate import fitted_aggregator, targets_frame
from weaks2strong.pipeline.classification.align import LABELS, aligned_student
from weaks2strong.pipeline.classification.distill import (
    ceiling_config,
    fitted_student,
    soft_label_rows,
    test_predictions,
)
from weaks2strong.pipeline.classification.refine import fitted_refiner
from weaks2strong.pipeline.classification.teach import checked_labels, teacher_probs, teacher_test_labels
from weaks2strong.pipeline.common.stage import cached_stage
from weaks2strong.pipeline.common.tables import prob_columns, split_frame, split_probs, split_rows, task_key
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_text
from weaks2strong.tasks import Task

log = logging.getLogger("weaks2strong.pipeline")


def predict_test(task: Task, dev: Task, labels: dict[str, Artifact], targets: Artifact, ceiling: Artifact,
                 student: Artifact, cfg: DictConfig, store: Store, aligned: Artifact | None = None
                 ) -> dict[str, Artifact]:
    """Test predictions of every teacher, the aggregate, the ceiling, the student and the aligned
    student (if any): one artifact per model, keyed by the unsealed task and that model's own
    artifact, so jobs of a sweep that share a teacher or a ceiling label the test split with it once.
    ``dev`` is the sealed task the stages before saw; ``task`` the unsealed one."""
    k = task.num_classes
    out = {}
    for name, artifact in labels.items():
        def label(name=name, artifact=artifact):
            if artifact.stage == "refine":
                teacher = fitted_refiner(dev, labels, cfg.refine, artifact.key, artifact.record("demos"))
                probs = teacher.predict_proba(task, "test")
            else:
                probs = teacher_test_labels(task, dev, name, cfg.teachers[name], artifact.key, store)
            return split_frame(task, "test", checked_labels(probs, task, name, "test"))

        out[f"teacher:{name}"] = cached_test_predictions(store, task, artifact, label)

    def aggregate_rows():
        stacked = np.stack([tested_rows(task, out[f"teacher:{n}"])[prob_columns(k)].to_numpy() for n in labels], axis=1)
        model = fitted_aggregator(dev, labels, cfg.aggregator, targets.key)  # stacked: (N, T, K)
        return targets_frame(task, "test", model, stacked, cfg.aggregator.get("weighting", "none"))[0]

    out["aggregate"] = cached_test_predictions(store, task, targets, aggregate_rows)
    for artifact, source, stage_cfg in ((ceiling, None, ceiling_config(cfg)), (student, targets, cfg)):
        out[artifact.stage] = cached_test_predictions(
            store, task, artifact, lambda a=artifact, s=source, c=stage_cfg: split_frame(
                task, "test", test_predictions(task, fitted_student(dev, s, a, c))))
    if aligned is not None:
        out[aligned.stage] = cached_test_predictions(store, task, aligned, lambda: split_frame(
            task, "test", test_predictions(task, aligned_student(dev, targets, student, aligned, cfg))))
    return out


def cached_test_predictions(store: Store, task: Task, model: Artifact, predict) -> Artifact:
    """The test predictions of the model behind ``model`` (a stage artifact), computed once."""
    inputs = {"task": task_key(task), model.stage: model.key}
    key = stable_hash(inputs)

    def compute():
        frame = predict()
        with store.create("predict_test", key, inputs, {}) as tmp:
            write_table(tmp / "predictions.parquet", frame)
        log.info("predict_test: %s %s labelled the test split", model.stage, model.key)

    return cached_stage(store, "predict_test", key, compute, main_only=True)  # rank 0 alone evaluates


def tested_rows(task: Task, artifact: Artifact):
    return split_rows(artifact, "predictions", task, "test")


def evaluate(task: Task, dev: Task, labels: dict[str, Artifact], targets: Artifact, ceiling: Artifact,
             student: Artifact, cfg: DictConfig, store: Store, run_dir: Path, aligned: Artifact | None = None) -> dict:
    """Score everything on val, w2s_train and test; PGR and misfit; metrics.json + report.md in the run dir.
    ``aligned`` (align=verbalizer_dpo): the DPO'd student's scores (``aligned``), its PGR against the
    same yardsticks as the student's (``pgr_aligned``) and what it was trained on (``align``)."""
    tested = predict_test(task, dev, labels, targets, ceiling, student, cfg, store, aligned)
    k = task.num_classes

    def probs(source: str, artifact: Artifact, table: str, split: str) -> np.ndarray:
        if split == "test":
            return tested_rows(task, tested[source])[prob_columns(k)].to_numpy()
        return split_probs(artifact, table, task, split)

    splits = ("val", "w2s_train", "test")
    scores = {"teachers": {name: {s: classification_metrics(probs(f"teacher:{name}", a, "labels", s), task.labels(s))
                                  for s in splits} for name, a in labels.items()}}
    for entry, artifact, table in (("aggregate", targets, "targets"), ("ceiling", ceiling, "predictions"),
                                   ("student", student, "predictions")):
        scores[entry] = {s: classification_metrics(probs(entry, artifact, table, s), task.labels(s)) for s in splits}
    soft, weights = soft_label_rows(task, targets)
    test_aggregate = tested_rows(task, tested["aggregate"])
    fits = {"w2s_train": (probs("student", student, "predictions", "w2s_train"), soft, task.labels("w2s_train"),
                          weights),
            "test": (probs("student", student, "predictions", "test"), test_aggregate[prob_columns(k)].to_numpy(),
                     task.labels("test"), test_aggregate["weight"].to_numpy())}
    metrics = summarize(scores, fits)
    if aligned is not None:
        metrics.update(aligned_summary(metrics, aligned, {s: classification_metrics(
            probs(aligned.stage, aligned, "predictions", s), task.labels(s)) for s in splits}))
    metrics["task"] = {"name": task.name, "sizes": task.sizes(), "source": task.source}
    metrics["seeds"] = dict(cfg.seeds)
    metrics["predict_test"] = {source: str(a.path) for source, a in tested.items()}
    metrics["teacher_analysis"] = teacher_analysis(targets.record("teachers"), scores["teachers"])
    metrics["teacher_estimates_summary"] = estimates_summary(metrics["teacher_analysis"])
    metrics["teacher_error_correlation"] = error_table(task, labels, "val")
    metrics["plots"] = make_plots(task, targets, test_aggregate[prob_columns(k)].to_numpy(),
                                  metrics["teacher_error_correlation"], run_dir)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    render_table(metrics)
    return metrics


def aligned_summary(metrics: dict, aligned: Artifact, scores: dict) -> dict:
    """The aligned student's scores and its PGR, beside the student's: the same best teacher (chosen
    on val), the same aggregate and the same ceiling."""
    acc = lambda entry, split: entry[split]["accuracy"]  # noqa: E731
    best = metrics["teachers"][metrics["best_teacher"]]
    pgrs = {split: {"vs_best_teacher": pgr(acc(scores, split), acc(best, split), acc(metrics["ceiling"], split)),
                    "vs_aggregate": pgr(acc(scores, split), acc(metrics["aggregate"], split),
                                        acc(metrics["ceiling"], split))} for split in ("val", "test")}
    summary = aligned.record("summary")
    return {"aligned": scores, "pgr_aligned": pgrs,
            "align": {**summary, "label": LABELS[summary["init"]], "artifact": str(aligned.path)}}


def error_table(task: Task, labels: dict[str, Artifact], split: str) -> dict:
    """How the teachers' errors correlate on ``split`` (val: gold the stages may read; an aggregator
    anchored on val saw these rows' gold, but the teachers did not), as metrics.json holds it."""
    matrix, shared = error_correlation(teacher_probs(task, labels, split), task.labels(split))
    undefined_as_null = [[None if np.isnan(r) else r for r in row] for row in matrix.tolist()]  # JSON has no NaN
    return {"split": split, "teachers": list(labels), "matrix": undefined_as_null, "n_shared": shared.tolist()}


def make_plots(task: Task, targets: Artifact, test_posterior: np.ndarray, errors: dict, run_dir: Path) -> list[str]:
    """Teacher confusion heatmaps (when the aggregator estimates them), the teachers' error correlation
    and reliability diagrams of the posterior on val and test."""
    from weaks2strong.evaluate import teacher_plots as plots

    folder = run_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = [str(plots.plot_reliability(split_probs(targets, "targets", task, "val"), task.labels("val"),
                                       folder / "aggregate_reliability_val.png", title="Aggregate posterior, val")),
            str(plots.plot_reliability(test_posterior, task.labels("test"), folder / "aggregate_reliability_test.png",
                                       title="Aggregate posterior, test"))]
    teachers = targets.record("teachers")
    # the confusion panels need each cell's interval too (the label model reports the confusions alone)
    if teachers and all({"confusion", "confusion_low", "confusion_high"} <= t.keys() for t in teachers.values()):
        names, confusion, low, high = plots.teacher_arrays(teachers)
        made.append(str(plots.plot_teacher_confusions(confusion, low, high, folder / "teacher_confusions.png",
                                                      teacher_names=names, class_names=task.classes)))
    split = errors["split"]
    made.append(str(plots.plot_error_correlation(errors["matrix"], errors["n_shared"],
                                                 folder / f"teacher_error_correlation_{split}.png",
                                                 teacher_names=errors["teachers"],
                                                 title=f"Teacher error correlation, {split}")))
    return made


