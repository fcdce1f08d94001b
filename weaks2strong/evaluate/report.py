"""The run's summary: PGR, misfit, a markdown report and the table printed at the end of a run."""
from __future__ import annotations

import math

import numpy as np

from weaks2strong.evaluate.metrics import misfit, pgr


def summarize(scores: dict, student_train_probs: np.ndarray, train_targets: np.ndarray) -> dict:
    """Add PGR (against the best single teacher and against the aggregate) and the student's misfit."""
    acc = lambda entry: entry["test"]["accuracy"]  # noqa: E731
    best_name = max(scores["teachers"], key=lambda n: acc(scores["teachers"][n]))
    best, ceiling, student = acc(scores["teachers"][best_name]), acc(scores["ceiling"]), acc(scores["student"])
    aggregate = acc(scores["aggregate"])
    fit = misfit(student_train_probs, train_targets)
    acc_on = lambda entry: scores[entry]["w2s_train"]["accuracy"]  # noqa: E731
    return {
        **scores,
        "best_teacher": best_name,
        "pgr": {"vs_best_teacher": pgr(student, best, ceiling), "vs_aggregate": pgr(student, aggregate, ceiling)},
        "misfit": fit,
        # Charikar et al. 2024: on w2s_train, gain over the weak labels >= misfit (for convex fits)
        "gain_over_targets_w2s_train": acc_on("student") - acc_on("aggregate"),
    }


def _rows(metrics: dict) -> list[tuple[str, dict, dict]]:
    rows = [(f"teacher: {n}", s["test"], s["w2s_train"]) for n, s in metrics["teachers"].items()]
    rows += [(name, metrics[name]["test"], metrics[name]["w2s_train"]) for name in ("aggregate", "ceiling", "student")]
    return rows


def render_markdown(metrics: dict) -> str:
    task = metrics.get("task", {})
    lines = [f"# weaks2strong run: {task.get('name', '')}", "", f"Splits: {task.get('sizes', {})}", "",
             "| model | test acc | test AUROC | coverage | w2s_train acc |", "|---|---|---|---|---|"]
    for name, test, train in _rows(metrics):
        lines.append(f"| {name} | {test['accuracy']:.4f} | {test['auroc']:.4f} | {test['coverage']:.2f} "
                     f"| {train['accuracy']:.4f} |")
    p, m = metrics["pgr"], metrics["misfit"]
    lines += ["", f"Best single teacher: **{metrics['best_teacher']}**", "",
              f"PGR vs best teacher: **{_pgr(p['vs_best_teacher'])}**; PGR vs aggregate: **{_pgr(p['vs_aggregate'])}**",
              "",
              f"Student misfit on its targets (w2s_train): disagreement {m['disagreement']:.4f}, KL {m['kl']:.4f}; "
              f"gain over its targets there: {metrics['gain_over_targets_w2s_train']:+.4f}", ""]
    analysis = metrics.get("teacher_analysis", {})
    if any(a.get("estimated_accuracy") is not None for a in analysis.values()):
        lines += ["## Teachers as the aggregator sees them (w2s_train)", "",
                  "| teacher | estimated accuracy | 95% interval | true accuracy (where it answered) |",
                  "|---|---|---|---|"]
        for name, a in analysis.items():
            low, high = a["estimated_interval"]
            interval = f"[{low:.3f}, {high:.3f}]" if low is not None else "-"
            est, true = a["estimated_accuracy"], a["true_accuracy_w2s_train"]
            lines.append(f"| {name} | {est:.3f} | {interval} | {true:.3f} |")
        lines.append("")
    for plot in metrics.get("plots", []):
        lines.append(f"![{plot.rsplit('/', 1)[-1]}](plots/{plot.rsplit('/', 1)[-1]})")
    return "\n".join(lines)


def render_table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weaks2strong · {metrics.get('task', {}).get('name', '')}")
    for col in ("model", "test acc", "test AUROC", "coverage", "w2s_train acc"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, test, train in _rows(metrics):
        table.add_row(name, f"{test['accuracy']:.4f}", f"{test['auroc']:.4f}", f"{test['coverage']:.2f}",
                      f"{train['accuracy']:.4f}")
    console = Console()
    console.print(table)
    p, m = metrics["pgr"], metrics["misfit"]
    console.print(f"PGR vs best teacher ({metrics['best_teacher']}): {_pgr(p['vs_best_teacher'])}   "
                  f"PGR vs aggregate: {_pgr(p['vs_aggregate'])}   misfit: {m['disagreement']:.4f}")


def _pgr(value: float) -> str:
    return "n/a (the ceiling does not beat the weak labels)" if math.isnan(value) else f"{value:.3f}"


def flat_metrics(metrics: dict) -> dict[str, float]:
    """``split/name`` style scalars for loggers."""
    out = {f"test/{n}/accuracy": s["test"]["accuracy"] for n, s in metrics["teachers"].items()}
    for name in ("aggregate", "ceiling", "student"):
        out[f"test/{name}/accuracy"] = metrics[name]["test"]["accuracy"]
        out[f"test/{name}/auroc"] = metrics[name]["test"]["auroc"]
    out["pgr/vs_best_teacher"] = metrics["pgr"]["vs_best_teacher"]
    out["pgr/vs_aggregate"] = metrics["pgr"]["vs_aggregate"]
    out["misfit/disagreement"] = metrics["misfit"]["disagreement"]
    return out
