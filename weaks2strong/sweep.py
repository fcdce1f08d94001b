"""A Hydra callback that writes one summary table when a multirun ends.

Jobs are grouped by their overrides minus ``seed``, so ``-m aggregator=mean,bayes seed=0,1,2``
gives one row per aggregator with mean ± std over the seeds.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

COLUMNS = {
    "student": lambda m: m["student"]["test"]["accuracy"],
    "ceiling": lambda m: m["ceiling"]["test"]["accuracy"],
    "aggregate": lambda m: m["aggregate"]["test"]["accuracy"],
    "targets_w2s_acc": lambda m: m["aggregate"]["w2s_train"]["accuracy"],
    "best_teacher": lambda m: m["teachers"][m["best_teacher"]]["test"]["accuracy"],
    "pgr_vs_best": lambda m: m["pgr"]["vs_best_teacher"],
    "pgr_vs_aggregate": lambda m: m["pgr"]["vs_aggregate"],
    "misfit": lambda m: m["misfit"]["disagreement"],
}


def collect(sweep_dir: Path) -> pd.DataFrame:
    """One row per finished job: its overrides (minus seed), seed, and the headline numbers."""
    rows = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
        overrides = yaml.safe_load((metrics_file.parent / ".hydra" / "overrides.yaml").read_text()) or []
        seed = next((o.split("=", 1)[1] for o in overrides if o.startswith("seed=")), "0")
        group = " ".join(o for o in overrides if not o.startswith("seed=")) or "(defaults)"
        metrics = json.loads(metrics_file.read_text())
        rows.append({"group": group, "seed": seed, **{k: f(metrics) for k, f in COLUMNS.items()}})
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame) -> str:
    lines = ["| group | n | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for group, part in runs.groupby("group", sort=False):
        cells = [f"{np.mean(part[c]):.4f} ± {np.std(part[c], ddof=1) if len(part) > 1 else 0:.4f}" for c in COLUMNS]
        lines.append(f"| {group} | {len(part)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = collect(sweep_dir)
        if runs.empty:
            log.warning("sweep summary: no finished job under %s", sweep_dir)
            return
        runs.to_csv(sweep_dir / "sweep_runs.csv", index=False)
        table = summarize(runs)
        (sweep_dir / "sweep_summary.md").write_text(table)
        log.info("sweep summary (%d jobs) in %s\n%s", len(runs), sweep_dir / "sweep_summary.md", table)
