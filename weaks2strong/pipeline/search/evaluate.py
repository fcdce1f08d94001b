"""The search path's evaluate: per question scores (exact match and F1, or a reward model's), each
method's means with standard errors, and paired differences on the same questions."""
from __future__ import annotations

import numpy as np
import pandas as pd

from weaks2strong.tasks.generation import GenerationTask, exact_match, token_f1


def question_scores(task: GenerationTask, split: str, result: pd.DataFrame, reward) -> dict[str, np.ndarray]:
    """Per question: exact match and token F1 against the gold answer, or, with a reward model, the
    reward of the opening followed by the continuation."""
    if reward is not None:
        return {"reward": reward([f"{q} {a}" for q, a in zip(task.questions(split), result["answer"])])}
    answers = task.answers(split)
    return {"em": np.array([exact_match(p, g) for p, g in zip(result["answer"], answers)]),
            "f1": np.array([token_f1(p, g) for p, g in zip(result["answer"], answers)])}


def mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def method_metrics(scores: dict[str, np.ndarray], result: pd.DataFrame) -> dict:
    out: dict = {"n": len(result), "strong_tokens_per_question": float(result["strong_tokens"].mean())}
    for name, values in scores.items():
        out[name], out[f"{name}_se"] = mean_se(values)
    return out


def paired_differences(values: dict[str, np.ndarray]) -> dict:
    """score(b) − score(a) on the same questions, with the standard error of the per-question differences."""
    names, out = list(values), {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff, se = mean_se(values[b] - values[a])
            out[f"{b}_minus_{a}"] = {"diff": diff, "se": se}
    return out


def render_markdown(metrics: dict) -> str:
    metric = metrics["metric"]
    extra = " F1 |" if metric == "em" else ""
    lines = ["# Weak-to-strong search", "",
             f"| method (W, K, L) | split | {metric} ± SE |{extra} strong tokens / question |",
             "|---|---|---|---|" + ("---|" if extra else "")]
    for split, table in metrics["search"].items():
        for name, m in table.items():
            w = metrics["settings"][name]
            f1 = f" {m['f1']:.3f} |" if extra else ""
            lines.append(f"| {name} ({w['width']}, {w['samples']}, {w['chunk'] or '∞'}) | {split} | "
                         f"{m[metric]:.3f} ± {m[metric + '_se']:.3f} |{f1} {m['strong_tokens_per_question']:.1f} |")
    lines += ["", f"| paired difference | split | {metric} diff ± SE |", "|---|---|---|"]
    for split, table in metrics["paired"].items():
        lines += [f"| {name} | {split} | {d['diff']:+.3f} ± {d['se']:.3f} |" for name, d in table.items()]
    if "reward_accuracy" in metrics:
        lines += ["", f"Reward model accuracy on its own held-out gold rows: {metrics['reward_accuracy']:.3f}"]
    return "\n".join(lines) + "\n"
