"""The run's summary: PGR on val and test, the misfit/gain of Charikar et al., a markdown report and
the table printed at the end of a run."""
from __future__ import annotations

import math

import numpy as np

from weaks2strong.evaluate.metrics import misfit_gain, pgr

SPLITS = ("val", "test")
ENTRIES = ("aggregate", "ceiling", "student")


def summarize(scores: dict, fits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """PGR against the best single teacher (chosen on val, never on test) and against the aggregate,
    on val and on test; the misfit/gain comparison on each split of ``fits``: split -> (student probs,
    target probs, gold labels, training weights)."""
    acc = lambda entry, split: entry[split]["accuracy"]  # noqa: E731
    best_name = max(scores["teachers"], key=lambda n: acc(scores["teachers"][n], "val"))
    out = {**scores, "best_teacher": best_name, "best_teacher_chosen_on": "val", "pgr": {}}
    for split in SPLITS:
        student, ceiling = acc(scores["student"], split), acc(scores["ceiling"], split)
        out["pgr"][split] = {"vs_best_teacher": pgr(student, acc(scores["teachers"][best_name], split), ceiling),
                             "vs_aggregate": pgr(student, acc(scores["aggregate"], split), ceiling)}
    out["misfit"] = {split: misfit_gain(*arrays) for split, arrays in fits.items()}
    return out


def _rows(metrics: dict) -> list[tuple[str, dict]]:
    rows = [(f"teacher: {n}", s) for n, s in metrics["teachers"].items()]
    return rows + [(name, metrics[name]) for name in ENTRIES] + _aligned(metrics)


def _aligned(metrics: dict) -> list[tuple[str, dict]]:
    """The DPO'd student's row (align=verbalizer_dpo), named for where it started; none without one."""
    return [(metrics["align"]["label"], metrics["aligned"])] if "aligned" in metrics else []


def _cells(score: dict) -> list[str]:
    return [f"{score['val']['accuracy']:.4f}", f"{score['test']['accuracy']:.4f}", f"{score['test']['auroc']:.4f}",
            f"{score['test']['coverage']:.2f}", f"{score['w2s_train']['accuracy']:.4f}"]


HEADER = ("model", "val acc", "test acc", "test AUROC", "test coverage", "w2s_train acc")


def render_markdown(metrics: dict) -> str:
    task = metrics.get("task", {})
    lines = [f"# weaks2strong run: {task.get('name', '')}", "", f"Splits: {task.get('sizes', {})}", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += [f"| {name} | " + " | ".join(_cells(score)) + " |" for name, score in _rows(metrics)]
    lines += ["", f"Best single teacher (chosen on val): **{metrics['best_teacher']}**", "",
              "| PGR | val | test |", "|---|---|---|"]
    for against in ("vs_best_teacher", "vs_aggregate"):
        val, test = metrics["pgr"]["val"][against], metrics["pgr"]["test"][against]
        lines.append(f"| {against} | {_pgr(val)} | {_pgr(test)} |")
    for label, _ in _aligned(metrics):
        for against in ("vs_best_teacher", "vs_aggregate"):
            val, test = metrics["pgr_aligned"]["val"][against], metrics["pgr_aligned"]["test"][against]
            lines.append(f"| {label}, {against} | {_pgr(val)} | {_pgr(test)} |")
    lines += ["", "Misfit and gain in squared loss (Charikar et al. 2024: gain ≥ misfit when the student's class "
              "is convex):", "", "| split | err(targets) | err(student) | gain | misfit | misfit (weighted) | "
              "gain ≥ misfit |", "|---|---|---|---|---|---|---|"]
    for split, m in metrics["misfit"].items():
        weighted = f"{m['misfit_weighted']:.4f}" if "misfit_weighted" in m else "-"
        lines.append(f"| {split} | {m['err_targets']:.4f} | {m['err_student']:.4f} | {m['gain']:+.4f} | "
                     f"{m['misfit']:.4f} | {weighted} | {'yes' if m['gain_ge_misfit'] else 'no'} |")
    lines.append("")
    lines += _estimates_lines(metrics.get("teacher_analysis", {}), metrics.get("teacher_estimates_summary"))
    lines += _error_lines(metrics.get("teacher_error_correlation"))
    for plot in metrics.get("plots", []):
        lines.append(f"![{plot.rsplit('/', 1)[-1]}](plots/{plot.rsplit('/', 1)[-1]})")
    return "\n".join(lines)


ERR_TOGETHER = 0.5  # an error correlation above this is flagged: the teachers' votes are far from independent


def _estimates_lines(analysis: dict, summary: dict | None) -> list[str]:
    """The aggregator's accuracy estimates against the truth on w2s_train; nothing if it made none."""
    if not any(a.get("estimated_accuracy") is not None for a in analysis.values()):
        return []
    lines = ["## Teachers as the aggregator sees them (w2s_train)", "",
             "| teacher | estimated [low, high] | true (w2s_train, where answered) | covered | abs error |",
             "|---|---|---|---|---|"]
    for name, a in analysis.items():
        est, (low, high) = a["estimated_accuracy"], a["estimated_interval"]
        interval = f" [{low:.3f}, {high:.3f}]" if None not in (low, high) else ""
        estimate = "-" if est is None else f"{est:.3f}{interval}"
        covered = {True: "yes", False: "**no**", None: "-"}[a.get("covered")]
        lines.append(f"| {name} | {estimate} | {_num(a['true_accuracy_w2s_train'], 3)} | {covered} | "
                     f"{_num(a.get('abs_error'), 3)} |")
    if summary:
        coverage = "-" if summary["coverage"] is None else f"{summary['coverage']:.2f}"
        lines += ["", f"Intervals covering the true accuracy: {coverage} of {summary['n']}; mean absolute error of "
                  f"the estimates: {_num(summary['mae'], 3)}."]
    return lines + [""]


def _error_lines(errors: dict | None) -> list[str]:
    """The teachers' error correlation as a table, and the pairs that err together."""
    if not errors:
        return []
    names, matrix, shared = errors["teachers"], errors["matrix"], errors["n_shared"]
    lines = [f"## Teacher error correlation ({errors['split']})", "",
             "Pearson r of the teachers' errors, each pair on the rows both answered; - where undefined (an "
             "error that never varies, or < 2 shared rows).", "",
             "| teacher (rows answered) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {a} ({shared[i][i]}) | " + " | ".join(_num(r, 2) for r in row) + " |"
              for i, (a, row) in enumerate(zip(names, matrix))]
    together = [(names[i], names[j], matrix[i][j], shared[i][j]) for i in range(len(names))
                for j in range(i + 1, len(names)) if matrix[i][j] is not None and matrix[i][j] > ERR_TOGETHER]
    lines.append("")
    lines += [f"- {a} & {b}: r = {r:.2f} on {n} rows: err together" for a, b, r, n in together] or [
        f"No pair's errors correlate above {ERR_TOGETHER}."]
    return lines + [""]


def _num(value, digits: int) -> str:
    """A number for a table; ``-`` for one that is missing or undefined."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def render_table(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weaks2strong · {metrics.get('task', {}).get('name', '')}")
    for col in HEADER:
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, score in _rows(metrics):
        table.add_row(name, *_cells(score))
    console = Console()
    console.print(table)
    p = metrics["pgr"]
    console.print(f"PGR vs best teacher ({metrics['best_teacher']}, chosen on val): val "
                  f"{_pgr(p['val']['vs_best_teacher'])}, test {_pgr(p['test']['vs_best_teacher'])}   "
                  f"PGR vs aggregate: val {_pgr(p['val']['vs_aggregate'])}, test {_pgr(p['test']['vs_aggregate'])}")
    for label, _ in _aligned(metrics):
        p = metrics["pgr_aligned"]
        console.print(f"{label}: PGR vs best teacher: val {_pgr(p['val']['vs_best_teacher'])}, test "
                      f"{_pgr(p['test']['vs_best_teacher'])}   PGR vs aggregate: val {_pgr(p['val']['vs_aggregate'])}, "
                      f"test {_pgr(p['test']['vs_aggregate'])}")


def _pgr(value: float) -> str:
    return "n/a (the ceiling does not beat the weak labels)" if math.isnan(value) else f"{value:.3f}"


def flat_metrics(metrics: dict) -> dict[str, float]:
    """``split/name`` style scalars for loggers."""
    out = {}
    for split in SPLITS:
        out.update({f"{split}/{n}/accuracy": s[split]["accuracy"] for n, s in metrics["teachers"].items()})
        for name in ENTRIES:
            out[f"{split}/{name}/accuracy"] = metrics[name][split]["accuracy"]
            out[f"{split}/{name}/auroc"] = metrics[name][split]["auroc"]
        for against, value in metrics["pgr"][split].items():
            out[f"{split}/pgr/{against}"] = value
        if "aligned" in metrics:
            out[f"{split}/aligned/accuracy"] = metrics["aligned"][split]["accuracy"]
            out[f"{split}/aligned/auroc"] = metrics["aligned"][split]["auroc"]
            out.update({f"{split}/pgr_aligned/{k}": v for k, v in metrics["pgr_aligned"][split].items()})
    for split, m in metrics["misfit"].items():
        out[f"{split}/misfit"], out[f"{split}/gain"] = m["misfit"], m["gain"]
    return out
