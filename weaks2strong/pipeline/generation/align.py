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
import time
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from weaks2strong.pipeline import generation as gen
from weaks2strong.pipeline.compute import exclusive, recall, remember
from weaks2strong.pipeline.config import build, config_slice, make_loggers
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_weights
from weaks2strong.tasks.generation import GenerationTask, normalize_answer

log = logging.getLogger("weaks2strong.pipeline")


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
    from weaks2strong.models.preference import PreferenceCollator, PreferenceDataModule, check_pairs, with_reference

    a = cfg.align
    key = stable_hash(student.key, source, config_slice(a), config_slice(cfg.trainer), cfg.seeds.student)
    with exclusive(store, stage, key) as found:
        if found:
            log.info("%s: reused (%s)", stage, found.path)
            return found
        import pytorch_lightning as pl

        started = time.perf_counter()
        check_pairs(pairs, f"{stage} pairs from {source}")
        distilled = gen.fitted_student(task, student_targets, student, cfg, "gen_student")
        tok = distilled["tokenizer"]
        lm = copy.deepcopy(distilled["module"].lm)  # the distilled student stays as it was, for its own row
        collator = PreferenceCollator(tok, a.max_prompt_tokens, a.max_answer_tokens, a.get("share_prompt", False))
        pairs = with_reference(lm, collator, pairs, a.batch_size)  # once: no reference model while training
        val = with_reference(lm, collator, val_pairs, a.batch_size)
        pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
        module = build(a.model, "align.model")(lm=lm)
        data = PreferenceDataModule(collator, pairs, val, batch_size=a.batch_size, seed=cfg.seeds.student)
        trainer = instantiate(cfg.trainer, max_epochs=a.epochs, logger=make_loggers(cfg.get("logger"), stage),
                              enable_checkpointing=False, default_root_dir=str(run_dir))
        trainer.fit(module, datamodule=data)
        parts = {"module": module, "tokenizer": tok}
        remember(stage, key, parts)
        answers = gen.student_answers(parts, task, "val", cfg)
        with store.create(stage, key, {"student": student.key, "pairs": source},
                          {"align": config_slice(a), "trainer": config_slice(cfg.trainer)}) as tmp:
            write_table(tmp / "pairs.parquet", pd.DataFrame([vars(r) for r in pairs]))
            ids = task.split("val")["example_id"]
            write_table(tmp / "answers.parquet", pd.DataFrame({"split": "val", "example_id": ids, "answer": answers}))
            if cfg.student.get("save_weights", False):
                state = module.lm.state_dict()
                write_weights(tmp / "model.safetensors", state)
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started, "pairs": len(pairs)})
        log.info("%s: %d pairs, DPO'd and answered val in %.1f s", stage, len(pairs), time.perf_counter() - started)
        return store.find(stage, key)


def aligned_student(task: GenerationTask, student: Artifact, student_targets: Artifact, artifact: Artifact,
                    cfg: DictConfig, stage: str) -> dict:
    """The module this process aligned for ``artifact``, or the distilled student with the aligned
    weights the artifact saved (``student.save_weights=true``)."""
    parts = recall(stage, artifact.key)
    if parts is not None:
        return parts
    state = gen.saved_weights(artifact, stage)
    distilled = gen.fitted_student(task, student_targets, student, cfg, "gen_student")
    module = build(cfg.align.model, "align.model")(lm=copy.deepcopy(distilled["module"].lm))
    module.lm.load_state_dict(state)  # after wrapping: LoRA's keys are the wrapped model's
    return {"module": module, "tokenizer": distilled["tokenizer"]}
