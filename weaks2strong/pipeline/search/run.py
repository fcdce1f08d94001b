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

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from weaks2strong.pipeline.common.config import VOLATILE_KEYS, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage
from weaks2strong.pipeline.generation.teach import gen_task_key
from weaks2strong.pipeline.search.answer import answer_split
from weaks2strong.pipeline.search.evaluate import method_metrics, paired_differences, question_scores, render_markdown
from weaks2strong.pipeline.search.guide import search_parts, tuned_guide
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Store, stable_hash, write_json, write_text
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.search.cbs import CBS_VERSION
from weaks2strong.tasks.generation import GenerationTask

log = logging.getLogger("weaks2strong.pipeline")


def run(cfg: DictConfig, task: GenerationTask, store: Store, run_dir: Path) -> dict:
    if getattr(task, "kind", "classification") != "generation" or distributed.world_size() > 1:
        raise UserInputError(f"search (weak-to-strong search) answers a generation task in one process; "
                             f"task {task.name} is a {getattr(task, 'kind', 'classification')} task")
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

            def compute(source=source, split=split, name=name, method=method, key=key):
                nonlocal parts
                parts = parts or search_parts(dev, s, guide_artifact)
                answer_split(source, split, name, method, parts, cfg.seeds.student, store, key)

            found = cached_stage(store, "search_answers", key, compute)
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
