"""align: DPO of the teacher-forced generation student on preference pairs (``align=dpo``; default
``align=none``). It reads the distilled student (the module this process trained, or its saved
weights) and writes its own artifact: the pairs with their reference log-probs (``pairs.parquet``,
computed once, before training, by the student as distilled) and the aligned student's val answers.

Pairs from the candidate posterior q of an example: its most probable candidate a against each next
one b (at most ``align.max_pairs``), p = P(a correct | exactly one of a, b is) = q(a) / (q(a) + q(b))
and w = q(a) + q(b), the posterior mass that the pair decides anything (pairs below
``align.min_pair_mass`` are dropped). ``align.pairs=hard`` keeps the pairs with p = w = 1 (plain
DPO). The gold pairs (the alignment ceiling): the gold answer against the candidates that are not it.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import build, config_slice, settings_for
from weaks2strong.pipeline.common.dpo import Kept, Policy, dpo_collator, dpo_stage
from weaks2strong.pipeline.common.stage import recall_or_fit, saved_weights
from weaks2strong.pipeline.generation.distill import fitted_student, student_answers
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash
from weaks2strong.tasks.generation import GenerationTask, normalize_answer

log = logging.getLogger("weaks2strong.pipeline")


def run_align(dev: GenerationTask, cfg: DictConfig, store: Store, run_dir: Path, pools, targets: Artifact,
              student: Artifact) -> dict[str, Artifact]:
    """``align=dpo``: the student DPO'd on the posterior's pairs and, as the alignment ceiling, on gold pairs."""
    a = cfg.align
    if a.method == "none":
        return {}
    val_pairs = gold_pairs(dev, pools, "val", a.max_pairs)
    posterior = posterior_pairs(dev, targets, a.max_pairs, a.min_pair_mass, hard=a.pairs == "hard")
    gold = gold_pairs(dev, pools, "w2s_train", a.max_pairs)
    return {label: align(dev, student, targets, pairs, val_pairs, source, cfg, store, run_dir, stage)
            for label, pairs, source, stage in (
                ("student + DPO", posterior, f"{targets.key}:{a.pairs}", "gen_align"),
                ("student + DPO (gold pairs)", gold, "gold", "gen_align_gold"))}


def posterior_pairs(task: GenerationTask, targets: Artifact, max_pairs: int, min_pair_mass: float, hard: bool):
    from weaks2strong.models.preference import PreferenceRow

    prompts = dict(zip(task.split("w2s_train")["example_id"], task.prompts("w2s_train")))
    table = targets.table("targets")
    rows = []
    for eid, group in table[table["split"] == "w2s_train"].groupby("example_id", sort=False):
        ranked = group.sort_values("q", ascending=False, kind="stable")
        (top_text, top_q), rest = ranked[["text", "q"]].iloc[0], ranked[["text", "q"]].iloc[1:max_pairs + 1]
        for text, q in rest.itertuples(index=False):
            mass = top_q + q
            if mass >= min_pair_mass and mass > 0:
                rows.append(PreferenceRow(prompts[eid], top_text, text, p=1.0 if hard else top_q / mass,
                                          weight=1.0 if hard else mass))
    return rows


def gold_pairs(task: GenerationTask, pools: dict[str, list], split: str, max_pairs: int):
    """The gold answer of each question of ``split`` against its candidates that are not it (p = w = 1)."""
    from weaks2strong.models.preference import PreferenceRow

    rows = []
    for prompt, answer, pool in zip(task.prompts(split), task.answers(split), pools[split]):
        wrong = [text for norm, text in pool if norm != normalize_answer(answer)][:max_pairs]
        rows += [PreferenceRow(prompt, answer, text) for text in wrong]
    return rows


def align(task: GenerationTask, student: Artifact, student_targets: Artifact, pairs: list, val_pairs: list,
          source: str, cfg: DictConfig, store: Store, run_dir: Path, stage: str) -> Artifact:
    """DPO the distilled ``student`` on ``pairs`` (named ``source`` in the key; ``val_pairs``: gold
    against val's wrong candidates, for DPO's val metrics); answers val."""
    from weaks2strong.models.preference import with_reference

    # both start from the distilled student (no yardstick of PGR): align.ceiling, the preference path's, is not theirs
    cfg = settings_for(cfg, "align", ceiling=False)
    a = cfg.align
    key = stable_hash(student.key, source, config_slice(a), config_slice(cfg.trainer), cfg.seeds.student)

    def policy() -> Policy:
        distilled = fitted_student(task, student_targets, student, cfg, "gen_student")
        tok = distilled["tokenizer"]
        lm = copy.deepcopy(distilled["module"].lm)  # the distilled student stays as it was, for its own row
        collator = dpo_collator(tok, cfg)
        # the reference log-probs, once: no reference model while training
        return Policy(tok, lm, collator, with_reference(lm, collator, pairs, a.batch_size),
                      with_reference(lm, collator, val_pairs, a.batch_size))

    def finish(parts: dict, _: Policy) -> Kept:
        answers = student_answers(parts, task, "val", cfg)
        ids = task.split("val")["example_id"]
        weights = {"model.safetensors": parts["module"].lm.state_dict()} if cfg.student.get("save_weights", False) \
            else {}
        return Kept({"answers": pd.DataFrame({"split": "val", "example_id": ids, "answer": answers})}, weights,
                    "DPO'd and answered val in {seconds:.1f} s")

    return dpo_stage(store, stage, key, pairs, name=stage, where=f"{stage} pairs from {source}", cfg=cfg,
                     run_dir=run_dir, logger_prefix=stage, policy=policy, finish=finish,
                     inputs={"student": student.key, "pairs": source},
                     config={"align": config_slice(a), "trainer": config_slice(cfg.trainer)})


def aligned_student(task: GenerationTask, student: Artifact, student_targets: Artifact, artifact: Artifact,
                    cfg: DictConfig, stage: str) -> dict:
    """The module this process aligned for ``artifact``, or the distilled student with the aligned
    weights the artifact saved (``student.save_weights=true``)."""
    def fit():
        state = saved_weights(artifact, stage)
        distilled = fitted_student(task, student_targets, student, cfg, "gen_student")
        module = build(cfg.align.model, "align.model")(lm=copy.deepcopy(distilled["module"].lm))
        module.lm.load_state_dict(state)  # after wrapping: LoRA's keys are the wrapped model's
        return {"module": module, "tokenizer": distilled["tokenizer"]}

    return recall_or_fit(stage, artifact.key, fit, keep=False)
