"""The preference path's evaluate stage: it unseals test; each judge's and each aggregate's accuracy,
and each student's accuracy as a judge by its implicit reward (margin > 0: first better; a tie
counts half). PGR against the best judge and against the Bayesian aggregate, with the gold-DPO'd
student as ceiling."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.evaluate.metrics import pgr
from weaks2strong.pipeline.classification.aggregate import best_teacher_by_val_accuracy, fitted_aggregator
from weaks2strong.pipeline.classification.teach import classification_teacher_key, fitted_teacher
from weaks2strong.pipeline.common.config import make_loggers
from weaks2strong.pipeline.common.dpo import dpo_collator
from weaks2strong.pipeline.common.stage import cached_stage
from weaks2strong.pipeline.common.tables import split_rows
from weaks2strong.pipeline.preference.aggregate import aggregator_configs
from weaks2strong.pipeline.preference.align import (
    accuracy_of_margins,
    aligned_module,
    pair_rows,
    reference_logprobs,
    reference_table,
)
from weaks2strong.runtime.artifacts import Artifact, Store, frame_hash, stable_hash, write_json, write_table, write_text
from weaks2strong.tasks.preference import PreferenceTask

log = logging.getLogger("weaks2strong.pipeline")
STUDENTS = {"gold": "student DPO'd on gold (ceiling)", "best_judge": "student DPO'd on the best judge",
            "majority": "student DPO'd on majority vote", "bayes": "student DPO'd on Bayes (unweighted)",
            "bayes_weighted": "student DPO'd on Bayes (p and w)"}


def accuracy_of_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, coverage) of (N, 2) probabilities: an abstention or an exact tie counts half."""
    first = probs[:, 0]
    spoke = np.isfinite(first) & (first != 0.5)
    right = np.where(spoke, (np.nan_to_num(first) > 0.5) == (labels == 0), 0.5)
    return float(np.mean(right)), float(np.mean(spoke))



def test_margins(task: PreferenceTask, name: str, artifact: Artifact, reference: Artifact, cfg: DictConfig,
                 store: Store) -> np.ndarray:
    """The student's implicit-reward margins on test (cached per student and test rows)."""
    from weaks2strong.models.preference import reward_margins

    key = stable_hash(artifact.key, reference.key, frame_hash(task.split("test")))

    def compute():
        module, tok = aligned_module(artifact, name, cfg)
        rows = pair_rows(task, "test", reference_table(reference))
        margins = reward_margins(module.lm, dpo_collator(tok, cfg), rows, module.beta, cfg.align.batch_size * 2)
        described = {"student": name, "split": "test"}
        with store.create("pref_margins", key, {"student": artifact.key}, described) as tmp:
            write_table(tmp / "margins.parquet", pd.DataFrame({"margin": margins}))

    return cached_stage(store, "pref_margins", key, compute).table("margins")["margin"].to_numpy()


def evaluate(task: PreferenceTask, dev: PreferenceTask, cfg: DictConfig, store: Store, run_dir: Path, labels: dict,
             aggregates: dict[str, Artifact], students: dict[str, Artifact]) -> dict:
    gold = {s: task.labels(s) for s in ("val", "test")}
    rows: dict[str, dict] = {}
    test_probs = {}
    for name, artifact in labels.items():
        teacher_cfg = cfg.teachers[name]
        teacher = fitted_teacher(dev, name, teacher_cfg, classification_teacher_key(dev, name, teacher_cfg))
        test_probs[name] = teacher.predict_proba(task, "test")
        val = split_rows(artifact, "labels", dev, "val")[["p_0", "p_1"]].to_numpy()
        rows[f"judge {name}"] = {s: dict(zip(("accuracy", "coverage"), accuracy_of_probs(p, gold[s])))
                                 for s, p in (("val", val), ("test", test_probs[name]))}
    stacked = np.stack([test_probs[n] for n in labels], axis=1)  # (N, T, 2)
    for name, agg_cfg in aggregator_configs(cfg).items():
        artifact = aggregates[name]
        model = fitted_aggregator(dev, labels, agg_cfg, artifact.key)
        val = split_rows(artifact, "targets", dev, "val")[["p_0", "p_1"]].to_numpy()
        rows[f"aggregate {name}"] = {s: dict(zip(("accuracy", "coverage"), accuracy_of_probs(p, gold[s])))
                                     for s, p in (("val", val), ("test", model.predict(stacked).posterior))}
    reference = reference_logprobs(task, ("test",), cfg, store)
    for name, artifact in students.items():
        val = artifact.table("margins")["margin"].to_numpy()
        test = test_margins(task, name, artifact, reference, cfg, store)
        pairs = artifact.table("pairs")
        rows[f"student {name}"] = {
            "val": {"accuracy": accuracy_of_margins(val, gold["val"])},
            "test": {"accuracy": accuracy_of_margins(test, gold["test"])},
            "pairs": {"count": len(pairs), "mean_p": float(pairs["p"].mean()),
                      "mean_weight": float(pairs["weight"].mean()), "chosen_is_gold": chosen_is_gold(dev, pairs)}}
    best = best_teacher_by_val_accuracy(dev, labels)

    def score(row, split):
        return rows[row][split]["accuracy"]

    metrics = {"task": {"name": task.name, "sizes": task.sizes(), "source": task.source}, "kind": "preference",
               "best_judge": best, "rows": rows,
               "pgr": {s: {ref: {n: pgr(score(f"student {n}", s), score(row, s), score("student gold", s))
                                 for n in STUDENTS if n != "gold"}
                           for ref, row in (("vs_best_judge", f"judge {best}"), ("vs_bayes", "aggregate bayes"))}
                       for s in ("val", "test")}}
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    print(render_markdown(metrics))
    for logger in make_loggers(cfg.get("logger"), "eval"):
        logger.log_metrics({f"{s}/{n}/accuracy": v[s]["accuracy"] for n, v in rows.items() for s in ("val", "test")})
        logger.finalize("success")
    write_json(run_dir / "artifacts.json", {"teach": {n: str(a.path) for n, a in labels.items()},
                                            "aggregate": {n: str(a.path) for n, a in aggregates.items()},
                                            "align": {n: str(a.path) for n, a in students.items()}})
    return metrics


def chosen_is_gold(task: PreferenceTask, pairs: pd.DataFrame) -> float:
    """How often a student's training pair has the gold-chosen response as its chosen one."""
    train = task.split("w2s_train")
    winner = {}  # either order of a w2s_train pair -> its gold-better response
    for first, second, label in zip(train["first"], train["second"], train["label"]):
        winner[(first, second)] = winner[(second, first)] = first if label == 0 else second
    right = [chosen == winner[(chosen, rejected)] for chosen, rejected in zip(pairs["chosen"], pairs["rejected"])]
    return float(np.mean(right)) if right else float("nan")


def render_markdown(metrics: dict) -> str:
    def cell(row: dict, split: str) -> str:
        value = row.get(split, {})
        acc = value.get("accuracy")
        if acc is None:
            return "-"
        return f"{acc:.3f}" + (f" ({value['coverage']:.2f})" if "coverage" in value else "")

    lines = [f"# weaks2strong · {metrics['task']['name']} (preference)", "",
             f"Accuracy on pairs (coverage: the share a judge spoke on; silence counts half). Best judge on val: "
             f"{metrics['best_judge']}.", "",
             "| row | val | test | training pairs (chosen is gold) |", "|---|---|---|---|"]
    for name, row in metrics["rows"].items():
        pairs = row.get("pairs")
        extra = f"{pairs['count']} ({pairs['chosen_is_gold']:.3f})" if pairs else ""
        label = STUDENTS.get(name.removeprefix("student "), name)
        lines.append(f"| {label} | {cell(row, 'val')} | {cell(row, 'test')} | {extra} |")

    def show(v):
        return "n/a" if v != v else f"{v:.3f}"

    lines += ["", "PGR on accuracy, the gold-DPO'd student as the ceiling:", "",
              "| student | vs best judge, val / test | vs Bayes aggregate, val / test |", "|---|---|---|"]
    p = metrics["pgr"]
    for n in STUDENTS:
        if n != "gold":
            best, bayes = p["val"]["vs_best_judge"][n], p["val"]["vs_bayes"][n]
            best_test, bayes_test = p["test"]["vs_best_judge"][n], p["test"]["vs_bayes"][n]
            lines.append(f"| {STUDENTS[n]} | {show(best)} / {show(best_test)} | {show(bayes)} / {show(bayes_test)} |")
    return "\n".join(lines) + "\n"
