"""A Hydra callback that writes one summary when a multirun ends.

Jobs are grouped by their overrides minus ``seed``, so ``-m aggregator=mean,bayes seed=0,1,2``
gives one row per aggregator with mean ± std over the seeds. ``sweep_summary.md`` holds the
headline table and a per-group table of every teacher's test accuracy; ``sweep_summary.png`` draws
teachers, aggregate, student and ceiling side by side for each group.

Re-render a finished (or partly finished) sweep: ``python -m weaks2strong.runtime.sweep <sweep dir>``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra.experimental.callback import Callback

from weaks2strong.runtime.artifacts import write_text

log = logging.getLogger(__name__)

COLUMNS = {  # test numbers, except where a column says val (the best teacher is chosen on val)
    "student": lambda m: m["student"]["test"]["accuracy"],
    "student_val": lambda m: m["student"]["val"]["accuracy"],
    "ceiling": lambda m: m["ceiling"]["test"]["accuracy"],
    "aggregate": lambda m: m["aggregate"]["test"]["accuracy"],
    "targets_w2s_acc": lambda m: m["aggregate"]["w2s_train"]["accuracy"],
    "best_teacher": lambda m: m["teachers"][m["best_teacher"]]["test"]["accuracy"],
    "pgr_vs_best": lambda m: m["pgr"]["test"]["vs_best_teacher"],
    "pgr_vs_best_val": lambda m: m["pgr"]["val"]["vs_best_teacher"],
    "pgr_vs_aggregate": lambda m: m["pgr"]["test"]["vs_aggregate"],
    "gain_ge_misfit": lambda m: float(m["misfit"]["w2s_train"]["gain_ge_misfit"]),
    # the aggregator's teacher-accuracy estimates against the truth on w2s_train (n/a for one that makes none)
    "interval_coverage": lambda m: _estimates(m, "coverage"),
    "teacher_mae": lambda m: _estimates(m, "mae"),
}
SEED_KINDS = ("splits", "teachers", "aggregator", "student")


def _estimates(metrics: dict, key: str) -> float:
    """One number of ``teacher_estimates_summary``; NaN where there is none (an aggregator without
    estimates, or a run from before the summary existed), which ``mean_std`` counts as not finite."""
    value = metrics.get("teacher_estimates_summary", {}).get(key)
    return float("nan") if value is None else float(value)


def collect(sweep_dir: Path) -> pd.DataFrame:
    """One row per finished job: the overrides that vary across the sweep (minus seed), the seed,
    and the headline numbers."""
    every_job = {f.parents[1]: yaml.safe_load(f.read_text()) or [] for f in sweep_dir.glob("*/.hydra/overrides.yaml")}
    shared = set.intersection(*map(set, every_job.values())) if len(every_job) > 1 else set()  # failed ones too
    jobs = [(every_job.get(f.parent, []), json.loads(f.read_text())) for f in sorted(sweep_dir.glob("*/metrics.json"))]
    rows = []
    for overrides, metrics in jobs:
        seed = next((o.split("=", 1)[1] for o in overrides if o.startswith("seed=")), "0")
        group = " ".join(o for o in overrides if not o.startswith("seed=") and o not in shared) or "(defaults)"
        teachers = {f"teacher:{name}": m["test"]["accuracy"] for name, m in metrics["teachers"].items()}
        seeds = {f"seed_{kind}": metrics.get("seeds", {}).get(kind) for kind in SEED_KINDS}
        rows.append({"group": group, "seed": seed, **seeds, **{k: f(metrics) for k, f in COLUMNS.items()},
                     **teachers})
    return pd.DataFrame(rows)


def teacher_table(runs: pd.DataFrame) -> str:
    """Per group: each teacher's mean test accuracy, then the aggregate, student and ceiling."""
    lines = ["| group | teachers (test accuracy) | aggregate | student | ceiling | PGR vs best |",
             "|---|---|---|---|---|---|"]
    for group, part in runs.groupby("group", sort=False):
        names = [c for c in part.columns if c.startswith("teacher:") and part[c].notna().any()]
        cells = ", ".join(f"{c.split(':', 1)[1]} {part[c].mean():.3f}" for c in names)
        lines.append(f"| {group} | {cells} | {part['aggregate'].mean():.3f} | {part['student'].mean():.3f} | "
                     f"{part['ceiling'].mean():.3f} | {mean_std(part['pgr_vs_best'])} |")
    return "\n".join(lines) + "\n"


def plot_groups(runs: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: every teacher (grey), the aggregate, the student and the ceiling, per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(runs["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups) + 1, 3.6), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        part = runs[runs["group"] == group]
        names = [c for c in part.columns if c.startswith("teacher:") and part[c].notna().any()]
        labels = [c.split(":", 1)[1] for c in names] + ["aggregate", "student", "ceiling"]
        values = [part[c].mean() for c in names + ["aggregate", "student", "ceiling"]]
        colors = ["0.7"] * len(names) + ["tab:blue", "tab:orange", "tab:green"]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(group.replace("experiment=", ""), fontsize=9)
        ax.set_ylim(0, 1)
        for i, v in enumerate(values):
            ax.text(i, v + 0.01, f"{v:.2f}", ha="center", fontsize=6)
    axes[0][0].set_ylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def failures(sweep_dir: Path) -> list[str]:
    """One line per failed job (``SweepSummary.on_job_end`` leaves a ``failed.txt`` in its folder)."""
    return [f"{f.parent.name}: {f.read_text().strip()}" for f in sorted(sweep_dir.glob("*/failed.txt"))]


def write_summary(sweep_dir: Path, quiet: bool = False) -> str | None:
    """Write the summary files (atomically: parallel jobs may all be writing them) and return the table."""
    runs, failed = collect(sweep_dir), failures(sweep_dir)
    if runs.empty and not failed:
        if not quiet:
            log.warning("sweep summary: no finished job under %s", sweep_dir)
        return None
    table = summarize(runs) + "\n" + teacher_table(runs) if not runs.empty else "No job finished.\n"
    if failed:
        table += "\nFailed jobs:\n" + "".join(f"- {line}\n" for line in failed)
    if not runs.empty:
        write_text(sweep_dir / "sweep_runs.csv", runs.to_csv(index=False))
        scratch = sweep_dir / f".sweep_summary.{os.getpid()}.png"
        os.replace(plot_groups(runs, scratch), sweep_dir / "sweep_summary.png")
    write_text(sweep_dir / "sweep_summary.md", table + ("" if runs.empty else "\n![per group](sweep_summary.png)\n"))
    if not quiet:
        for line in failed:
            log.error("sweep: job %s", line)
        log.info("sweep summary (%d jobs) in %s\n%s", len(runs), sweep_dir / "sweep_summary.md", table)
    return table


def mean_std(values: pd.Series) -> str:
    """``mean ± sample std (finite/all)``: a NaN (an undefined PGR) is counted, never silently dropped."""
    finite = values[np.isfinite(values.astype(float))]
    if finite.empty:
        return f"n/a (0/{len(values)})"
    std = np.std(finite, ddof=1) if len(finite) > 1 else 0.0
    return f"{np.mean(finite):.4f} ± {std:.4f} ({len(finite)}/{len(values)})"


def seeds_line(runs: pd.DataFrame) -> str:
    """Which sources of randomness varied across the runs of a group, and which were held fixed."""
    said = []
    for kind in SEED_KINDS:
        column = runs.get(f"seed_{kind}")
        if column is None or column.isna().all():
            continue
        values = sorted(set(column.dropna().astype(int)))
        said.append(f"{kind} {'varied' if len(values) > 1 else 'fixed'} ({', '.join(map(str, values))})")
    return ("Seeds within each group: " + "; ".join(said) + ".") if said else ""


def summarize(runs: pd.DataFrame) -> str:
    lines = ["Test numbers unless a column says val; mean ± std over a group's runs (runs with a finite "
             "value / runs).", seeds_line(runs), "",
             "| group | runs | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for group, part in runs.groupby("group", sort=False):
        cells = [mean_std(part[c]) for c in COLUMNS]
        lines.append(f"| {group} | {len(part)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    # the failed jobs of the multirun this process ran: ``w2s -m`` exits 1 if there are any, also under a
    # sweeper that goes on past them (Optuna's max_failure_rate) and so would end with status 0
    failed: list[str] = []

    def on_job_end(self, config, job_return, **kwargs) -> None:
        """After every job the summary is brought up to date, so a sweep that stops early (Hydra's
        basic sweeper raises at the end of a batch in which a job failed) still has one. A failed
        job leaves one line in its folder, which the summary lists."""
        from hydra.core.utils import JobStatus

        from weaks2strong.runtime import distributed

        if config.hydra.mode.name != "MULTIRUN" or not distributed.is_main():  # one writer per multi-task job
            return
        mark = Path(config.hydra.runtime.output_dir) / "failed.txt"
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            line = " ".join(config.hydra.overrides.task) + f" -> {type(error).__name__}: {error}".splitlines()[0]
            write_text(mark, line + "\n")
        else:
            mark.unlink(missing_ok=True)  # an earlier try of this job, in a sweep dir run again, failed
        write_summary(Path(config.hydra.sweep.dir), quiet=True)

    def on_multirun_end(self, config, **kwargs) -> None:
        write_summary(Path(config.hydra.sweep.dir))
        SweepSummary.failed = failures(Path(config.hydra.sweep.dir))


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python -m weaks2strong.runtime.sweep <sweep dir>")
    print(write_summary(Path(sys.argv[1])) or f"no finished job under {sys.argv[1]}")
