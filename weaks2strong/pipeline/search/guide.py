"""The search path's guide stage (``search_guide``): the small model fine-tuned on weak_train (the
tuned half of the guide pair; the untuned half is the same model as released), its weights kept;
and the models the answer stage decodes with."""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import TEACHER_VOLATILE_KEYS, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage, recall_or_fit, remember, saved_weights
from weaks2strong.runtime.artifacts import Artifact, Store, frame_hash, stable_hash, write_json, write_weights
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks.generation import GenerationTask
from weaks2strong.zoo import resolve_model

log = logging.getLogger("weaks2strong.pipeline")


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

    def compute():
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

    return cached_stage(store, "search_guide", key, compute, reused="search_guide:")


def search_parts(dev: GenerationTask, s: DictConfig, guide_artifact: Artifact) -> dict:
    """The strong model with its k-shot prefix, and the guide pair (tuned weights from the artifact)."""
    from weaks2strong.models.causal_lm import load_causal_lm, prefix_cache
    from weaks2strong.search.cbs import StrongModel
    from weaks2strong.search.guide import GuidePair
    from weaks2strong.teachers.generating import demonstrations

    models_dir = s.guide.get("models_dir")
    small = resolve_model(s.guide.model, models_dir)
    tok, untuned = load_causal_lm(small)

    def fit():  # the guide stage was reused: its tuned weights
        tuned_tok, tuned_lm = load_causal_lm(small)
        tuned_lm.load_state_dict(saved_weights(guide_artifact, "search_guide"))
        return tuned_tok, tuned_lm

    tuned_lm = recall_or_fit("search_guide", guide_artifact.key, fit, keep=False)[1]
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
