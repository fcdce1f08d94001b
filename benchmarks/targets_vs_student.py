"""What each run's student was fed, next to what it learned: for every run of one or more sweeps, the
soft targets' accuracy on w2s_train, how far their classes lean (argmax share and weight-mass share
of the first class against the truth), the mean weight, accuracy by confidence quintile, the share
of confident (> 0.6) wrong targets, and the student's val and test accuracy.

    python benchmarks/targets_vs_student.py runs/multirun/sst2_anchor [more sweep dirs]

The question it answers (issue: "why did the better targets train a worse student?"): does a
student's accuracy follow its targets' accuracy, their class balance, or their confident errors?
Reads each run's metrics.json, artifacts.json and .hydra/config.yaml (the task is rebuilt with its
test split sealed: only w2s_train's gold is read). Ends with ONE key=value line; what it prints is
written to docs/results/targets_vs_student.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from weaks2strong.runtime.resolvers import register_resolvers  # noqa: E402

IGNORED = ("seed=", "experiment=", "logger=", "hydra")  # overrides that do not name a method


def describe(run: Path) -> dict | None:
    if not (run / "metrics.json").is_file() or not (run / "artifacts.json").is_file():
        return None
    metrics = json.loads((run / "metrics.json").read_text())
    artifacts = json.loads((run / "artifacts.json").read_text())
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
    task = instantiate(cfg.task, _convert_="all").without_test()
    y = task.labels("w2s_train")
    targets = pd.read_parquet(Path(artifacts["aggregate"]) / "targets.parquet")
    targets = targets[targets["split"] == "w2s_train"]
    probs = targets[[c for c in targets.columns if c.startswith("p_")]].to_numpy()  # (N, K)
    weight, confidence = targets["weight"].to_numpy(), targets["confidence"].to_numpy()
    pred = probs.argmax(1)
    right = pred == y
    # quintiles by rank, not by value: a hard-vote aggregate has only a few distinct confidences
    quintile = np.argsort(np.argsort(confidence, kind="stable"), kind="stable") * 5 // len(confidence)
    return {
        "task": metrics["task"]["name"], "seed": metrics["seeds"]["splits"],
        "aggregator": f"{run.parent.name}: " + (" ".join(o for o in overrides if not o.startswith(IGNORED))
                                                 or "defaults"),
        "acc": float(right.mean()), "share0_pred": float((pred == 0).mean()), "share0_true": float((y == 0).mean()),
        "share0_weighted": float((weight * probs[:, 0]).sum() / max(weight.sum(), 1e-12)),
        "mean_weight": float(weight.mean()),
        "by_quintile": [float(right[quintile == q].mean()) for q in range(5)],
        "confident_wrong": float(((confidence > 0.6) & ~right).mean()),
        "student_val": metrics["student"]["val"]["accuracy"], "student_test": metrics["student"]["test"]["accuracy"],
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    register_resolvers()
    rows = [r for sweep in argv for run in sorted(Path(sweep).iterdir()) if run.is_dir()
            for r in [describe(run)] if r is not None]
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written

    record = Recording()
    print(f"{'task':<13}{'seed':>5} {'sweep: method':<58}{'targets':>8}{'class0 argmax/weighted/true':>30}"
          f"{'weight':>7}  {'acc by confidence quintile':<27}{'conf.wrong':>11}{'stud val':>9}{'stud test':>10}")
    for r in sorted(rows, key=lambda r: (r["task"], r["seed"], r["aggregator"])):
        shares = f"{r['share0_pred']:.3f}/{r['share0_weighted']:.3f}/{r['share0_true']:.3f}"
        print(f"{r['task']:<13}{r['seed']:>5} {r['aggregator']:<58}{r['acc']:>8.3f}{shares:>30}"
              f"{r['mean_weight']:>7.3f}  "
              f"{' '.join(f'{v:.2f}' for v in r['by_quintile']):<27}{r['confident_wrong']:>11.3f}"
              f"{r['student_val']:>9.3f}{r['student_test']:>10.4f}")
    frame = pd.DataFrame(rows)
    # across runs of one task: does the student's test accuracy move with the targets' accuracy?
    corr = {task: g[["acc", "student_test"]].corr().iloc[0, 1] for task, g in frame.groupby("task") if len(g) > 2}
    lean = (frame["share0_pred"] - frame["share0_true"]).abs()
    print(" ".join([f"runs={len(frame)}"] + [f"corr_targets_student_{t}={c:.2f}" for t, c in corr.items()]
                   + [f"corr_lean_student={np.corrcoef(lean, frame['student_test'])[0, 1]:.2f}"]))
    record.write("targets_vs_student", "What each run's student was fed, next to what it learned", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
