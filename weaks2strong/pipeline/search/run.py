"""The weak-to-strong search run (``w2s experiment=sciq_search``, Zhou et al. 2024): a frozen strong
model answers, steered at decoding time by a small tuned/untuned pair; nothing strong is trained.

Stages: ``search_guide`` fine-tunes the small model on weak_train (the tuned half of the pair; the
untuned half is the same model as released) and keeps its weights; ``search_answers`` caches each
method's answers per split. Methods (``search.methods``): each a (width W, samples K, chunk L) of
chunk-level beam search; W = 1, K = 1, L = null is plain sampling, W = 1, K = N, L = null best-of-N.
They are compared at equal strong-model compute: each method's sampled tokens are reported.

The settings are chosen on val; test is answered once, here, for the reported numbers. Claims are
paired: the difference of two methods on the same questions, with its standard error.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from weaks2strong.pipeline.compute import exclusive, recall, remember
from weaks2strong.pipeline.config import TEACHER_VOLATILE_KEYS, VOLATILE_KEYS, build, config_slice
from weaks2strong.pipeline.generation import gen_task_key, saved_weights
from weaks2strong.runtime.artifacts import (
    Artifact,
    Store,
    frame_hash,
    stable_hash,
    write_json,
    write_table,
    write_text,
    write_weights,
)
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.search.cbs import CBS_VERSION
from weaks2strong.tasks.generation import GenerationTask, exact_match, token_f1
from weaks2strong.zoo import resolve_model

log = logging.getLogger("weaks2strong.pipeline")


def run_search(cfg: DictConfig, task: GenerationTask, store: Store, run_dir: Path) -> dict:
    s = cfg.search
    check_methods(s.methods)
    dev = task.without_test()
    guide_artifact = tuned_guide(dev, s.guide, store, s.get("tune_on_label"))
    reward = build(s.reward, "search.reward").fit() if s.get("reward") is not None else None
    metrics: dict = {"settings": OmegaConf.to_container(s.methods, resolve=True), "search": {}, "paired": {},
                     "metric": "reward" if reward is not None else "em"}
    if reward is not None:
        metrics["reward_accuracy"] = reward.accuracy_
    parts = None
    for split in ("val", "test"):
        source = dev if split == "val" else task  # evaluate unseals test here, once
        results = {}
        for name, method in s.methods.items():
            # W = 1 (plain, best-of-N, greedy) answers the same under every CBS_VERSION
            version = [CBS_VERSION] if method.width > 1 else []
            key = stable_hash(gen_task_key(source), split, guide_artifact.key,
                              config_slice(s, (*VOLATILE_KEYS, "guide", "methods", "reward")),
                              OmegaConf.to_container(method, resolve=True), cfg.seeds.student, *version)
            with exclusive(store, "search_answers", key) as found:
                if found is None:
                    parts = parts or search_parts(dev, s, guide_artifact)
                    found = answer_split(source, split, name, method, parts, cfg.seeds.student, store, key)
            results[name] = pd.read_parquet(found.path / "answers.parquet")
        scores = {name: question_scores(source, split, r, reward) for name, r in results.items()}
        metrics["search"][split] = {name: method_metrics(scores[name], results[name]) for name in results}
        metrics["paired"][split] = paired_differences({n: v[metrics["metric"]] for n, v in scores.items()})
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    write_json(run_dir / "artifacts.json", {"search_guide": str(guide_artifact.path)})
    log.info("search report: %s", run_dir / "report.md")
    return metrics


def check_methods(methods: DictConfig) -> None:
    """Each ``search.methods.<name>`` needs width ≥ 1, samples ≥ 1 and chunk ≥ 1 or null, in one line."""
    if not methods:
        raise UserInputError("config search.methods is empty: name at least one (width, samples, chunk)")
    for name, m in methods.items():
        for field in ("width", "samples", "chunk"):
            value = m.get(field, "missing")
            if not (value is None and field == "chunk") and not (isinstance(value, int) and value >= 1):
                raise UserInputError(f"config search.methods.{name}.{field} must be an integer >= 1"
                                     f"{' or null (to the end)' if field == 'chunk' else ''}, got {value!r}")
        temperature = m.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or temperature < 0):
            raise UserInputError(f"config search.methods.{name}.temperature must be >= 0 (0: greedy), "
                                 f"got {temperature!r}")


def tuned_guide(dev: GenerationTask, guide_cfg: DictConfig, store: Store, label: int | None = None) -> Artifact:
    """The small model fine-tuned on weak_train (``search.guide``, a generating teacher with epochs > 0);
    with ``label`` (``search.tune_on_label``), on the weak_train rows of that label only (the
    continuations of one sentiment)."""
    if label is not None:
        weak = dev.split("weak_train")
        if "label" not in weak.columns:
            raise UserInputError(f"search.tune_on_label={label}: task {dev.name} has no labels to select by")
        dev = dataclasses.replace(dev, splits={**dev.splits, "weak_train": weak[weak["label"] == label]})
        if not len(dev.split("weak_train")):
            raise UserInputError(f"search.tune_on_label={label}: no weak_train row of task {dev.name} has it")
    # weak_train alone keys it: other split sizes (a bigger test, a smaller val) reuse the guide
    key = stable_hash(dev.name, dev.prompt, frame_hash(dev.split("weak_train")),
                      config_slice(guide_cfg, TEACHER_VOLATILE_KEYS))
    with exclusive(store, "search_guide", key) as found:
        if found is not None:
            log.info("search_guide: reused (%s)", found.path)
            return found
        started = time.perf_counter()
        teacher = build(guide_cfg, "search.guide")
        teacher.fit(dev)
        tok, lm = teacher.fitted
        remember("search_guide", key, (tok, lm))
        with store.create("search_guide", key, {"weak_train": frame_hash(dev.split("weak_train"))},
                          config_slice(guide_cfg)) as tmp:
            write_weights(tmp / "model.safetensors", lm.state_dict())
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started,
                                             "rows": len(dev.split("weak_train"))})
        log.info("search_guide: tuned in %.1f s", time.perf_counter() - started)
        return store.find("search_guide", key)


def search_parts(dev: GenerationTask, s: DictConfig, guide_artifact: Artifact) -> dict:
    """The strong model with its k-shot prefix, and the guide pair (tuned weights from the artifact)."""
    from weaks2strong.models.causal_lm import load_causal_lm, prefix_cache
    from weaks2strong.search.cbs import StrongModel
    from weaks2strong.search.guide import GuidePair
    from weaks2strong.teachers.generating import demonstrations

    models_dir = s.guide.get("models_dir")
    small = resolve_model(s.guide.model, models_dir)
    tok, untuned = load_causal_lm(small)
    tuned = recall("search_guide", guide_artifact.key)
    if tuned is None:
        _, tuned_lm = load_causal_lm(small)
        tuned_lm.load_state_dict(saved_weights(guide_artifact, "search_guide"))
    else:
        tuned_lm = tuned[1]
    strong_tok, strong_lm = load_causal_lm(resolve_model(s.strong, models_dir))
    weak = dev.split("weak_train")
    rng = np.random.default_rng(s.shots_seed)
    shots = [(weak["question"].iloc[i], weak["answer"].iloc[i])
             for i in rng.choice(len(weak), size=s.strong_shots, replace=False)]
    strong = StrongModel(strong_lm, strong_tok, s.temperature, s.max_new_tokens)
    prefix = demonstrations(dev, shots)
    head = strong_tok(prefix, add_special_tokens=True).input_ids if prefix else []
    return {"strong": strong, "prefix": prefix, "head_cache": prefix_cache(strong_lm, head),
            "guide": GuidePair(tuned_lm, untuned, tok, dev.prompt)}


def answer_split(task: GenerationTask, split: str, name: str, method: DictConfig, parts: dict, seed: int,
                 store: Store, key: str) -> Artifact:
    from weaks2strong.models.causal_lm import encode_prompts
    from weaks2strong.search.cbs import StrongModel, chunk_beam_search

    strong, guide = parts["strong"], parts["guide"]
    if method.get("temperature") is not None:  # a method may decode at its own temperature (0: greedy)
        strong = StrongModel(strong.lm, strong.tok, method.temperature, strong.max_new_tokens)
    _, encoded = encode_prompts(strong.tok, parts["prefix"], task.prompts(split), max_prompt_tokens=512)
    rows, started, example_ids = [], time.perf_counter(), task.split(split)["example_id"].tolist()
    for i, (question, ids) in enumerate(tqdm(list(zip(task.questions(split), encoded)), desc=f"{name} {split}",
                                             unit="q")):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)  # per question: independent of order
        result = chunk_beam_search(strong, ids, lambda texts, done, q=question: guide.score_texts(q, texts, done),
                                   method.width, method.samples, method.chunk, generator, parts["head_cache"])
        rows.append({"example_id": example_ids[i], "answer": result.best.text.strip(),
                     "guide_score": result.best.score, "strong_tokens": result.strong_tokens})
    seconds = time.perf_counter() - started
    with store.create("search_answers", key, {"task": gen_task_key(task)},
                      {"method": OmegaConf.to_container(method), "split": split}) as tmp:
        write_table(tmp / "answers.parquet", pd.DataFrame(rows))
        write_json(tmp / "timing.json", {"seconds": seconds, "questions": len(rows)})
    log.info("search %s on %s: %d questions in %.1f s", name, split, len(rows), seconds)
    return store.find("search_answers", key)


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
