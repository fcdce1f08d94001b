"""evaluate: score teachers, aggregate, ceiling and student on test; PGR, misfit, report and plots."""
from __future__ import annotations

from pathlib import Path

from weaks2strong.artifacts import Artifact, write_json, write_text
from weaks2strong.evaluate import classification_metrics
from weaks2strong.evaluate.report import render_markdown, render_table, summarize
from weaks2strong.pipeline.common import split_probs
from weaks2strong.tasks import Task


def evaluate(task: Task, labels: dict[str, Artifact], targets: Artifact, ceiling: Artifact, student: Artifact,
             run_dir: Path) -> dict:
    """Score everything on test; PGR and misfit; metrics.json + report.md in the run dir."""
    y_test, y_train = task.labels("test"), task.labels("w2s_train")
    scores = {"teachers": {}, "aggregate": {}, "ceiling": {}, "student": {}}
    for name, artifact in labels.items():
        scores["teachers"][name] = {
            "test": classification_metrics(split_probs(artifact, "labels", task, "test"), y_test),
            "w2s_train": classification_metrics(split_probs(artifact, "labels", task, "w2s_train"), y_train)}
    for entry, artifact, table in (("aggregate", targets, "targets"), ("ceiling", ceiling, "predictions"),
                                   ("student", student, "predictions")):
        scores[entry] = {split: classification_metrics(split_probs(artifact, table, task, split), y)
                         for split, y in (("test", y_test), ("w2s_train", y_train))}
    train_targets = split_probs(targets, "targets", task, "w2s_train")
    metrics = summarize(scores, split_probs(student, "predictions", task, "w2s_train"), train_targets)
    metrics["task"] = {"name": task.name, "sizes": {s: len(df) for s, df in task.splits.items()}, "source": task.source}
    metrics["teacher_analysis"] = teacher_analysis(targets.record("teachers"), scores["teachers"])
    metrics["plots"] = make_plots(task, targets, run_dir)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    render_table(metrics)
    return metrics


def teacher_analysis(estimates: dict, scores: dict) -> dict:
    """The aggregator's estimate of each teacher's accuracy next to its true accuracy on w2s_train."""
    out = {}
    for name, score in scores.items():
        est = estimates.get(name, {})
        out[name] = {"true_accuracy_w2s_train": score["w2s_train"]["accuracy_where_answered"],
                     "estimated_accuracy": est.get("accuracy"),
                     "estimated_interval": [est.get("accuracy_low"), est.get("accuracy_high")]}
    return out


def make_plots(task: Task, targets: Artifact, run_dir: Path) -> list[str]:
    """Teacher confusion heatmaps (when the aggregator estimates them) and a reliability diagram."""
    from weaks2strong.aggregate import plots

    folder = run_dir / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = [str(plots.plot_reliability(split_probs(targets, "targets", task, "test"), task.labels("test"),
                                       folder / "aggregate_reliability_test.png", title="Aggregate posterior, test"))]
    teachers = targets.record("teachers")
    if teachers and all("confusion" in t for t in teachers.values()):
        names, confusion, low, high = plots.teacher_arrays(teachers)
        made.append(str(plots.plot_teacher_confusions(confusion, low, high, folder / "teacher_confusions.png",
                                                      teacher_names=names, class_names=task.classes)))
    return made
