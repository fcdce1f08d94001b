"""The generation path's distill stage: the causal-LM student learns by confidence-weighted teacher
forcing on w2s_train's candidates (the ceiling on gold answers), and answers val greedily
(``gen_ceiling``, ``gen_student``)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from weaks2strong.pipeline.common.config import build, config_slice, make_loggers, settings_for
from weaks2strong.pipeline.common.stage import cached_stage, recall_or_fit, remember, saved_weights
from weaks2strong.pipeline.generation.teach import gen_task_key
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_weights
from weaks2strong.tasks.generation import GenerationTask
from weaks2strong.zoo import resolve_model

log = logging.getLogger("weaks2strong.pipeline")


def candidate_rows(task: GenerationTask, targets: Artifact | None, min_prob: float):
    """CandidateRows for w2s_train: the aggregate's q (renormalised over the candidates kept, those with
    q >= min_prob) and weight, or the gold answer with q = w = 1 (the ceiling)."""
    from weaks2strong.models.causal_lm import CandidateRow

    split = task.split("w2s_train")
    prompts = dict(zip(split["example_id"], task.prompts("w2s_train")))
    if targets is None:
        return [CandidateRow(p, [a], [1.0]) for p, a in zip(task.prompts("w2s_train"), task.answers("w2s_train"))]
    table = targets.table("targets")
    table = table[(table["split"] == "w2s_train") & (table["q"] >= min_prob)]
    weights = targets.table("examples").set_index("example_id")["weight"]
    rows = []
    for eid, group in table.groupby("example_id", sort=False):
        q = group["q"].to_numpy()
        rows.append(CandidateRow(prompts[eid], group["text"].tolist(), (q / q.sum()).tolist(), float(weights[eid])))
    return rows


def val_rows(task: GenerationTask):
    from weaks2strong.models.causal_lm import CandidateRow

    return [CandidateRow(p, [a], [1.0]) for p, a in zip(task.prompts("val"), task.answers("val"))]


def distill_lm(task: GenerationTask, targets: Artifact | None, cfg: DictConfig, store: Store, run_dir: Path,
               stage: str) -> Artifact:
    """Teacher-force the causal-LM student on the aggregate's candidates (``targets``) or, with
    ``targets=None``, on gold answers (the ceiling, with its own settings: ``settings_for``); it answers val."""
    source = targets.key if targets is not None else "gold"
    cfg = settings_for(cfg, "student", ceiling=targets is None)
    key = stable_hash(gen_task_key(task), source, config_slice(cfg.student), config_slice(cfg.trainer),
                      cfg.seeds.student)

    def compute():
        import pytorch_lightning as pl

        started = time.perf_counter()
        pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
        parts = build_lm_student(task, targets, cfg)
        trainer = instantiate(cfg.trainer, logger=make_loggers(cfg.get("logger"), stage), enable_checkpointing=False,
                              default_root_dir=str(run_dir))
        trainer.fit(parts["module"], datamodule=parts["data"])
        remember(stage, key, parts)
        answers = student_answers(parts, task, "val", cfg)
        with store.create(stage, key, {"task": gen_task_key(task), "targets": source},
                          {"student": config_slice(cfg.student), "trainer": config_slice(cfg.trainer)}) as tmp:
            ids = task.split("val")["example_id"]
            write_table(tmp / "answers.parquet", pd.DataFrame({"split": "val", "example_id": ids, "answer": answers}))
            if cfg.student.get("save_weights", False):
                state = parts["module"].lm.state_dict()
                write_weights(tmp / "model.safetensors", state)
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started,
                                             "rows": len(parts["data"].train_rows)})
        log.info("%s: trained and answered val in %.1f s", stage, time.perf_counter() - started)

    return cached_stage(store, stage, key, compute, reused=f"{stage}:")


def build_lm_student(task: GenerationTask, targets: Artifact | None, cfg: DictConfig) -> dict:
    recipe = build(cfg.student.recipe, "student.recipe")
    return recipe(train_rows=candidate_rows(task, targets, cfg.student.get("min_prob", 0.0)), val_rows=val_rows(task),
                  lm_path=resolve_model(cfg.student.lm, cfg.paths.models_dir),
                  model=build(cfg.student.model, "student.model"), data=build(cfg.student.data, "student.data"),
                  seed=cfg.seeds.student, **OmegaConf.to_container(cfg.student.net, resolve=True))


def student_answers(parts: dict, task: GenerationTask, split: str, cfg: DictConfig, prompts=None) -> list[str]:
    from weaks2strong.models.causal_lm import generate_answers

    gen = cfg.student.generate
    lm = parts["module"].lm
    answers = generate_answers(lm, parts["tokenizer"], prompts or task.prompts(split), gen.max_new_tokens,
                               gen.batch_size, desc=f"student answers {split}")
    return [a[0] for a in answers]


def fitted_student(task: GenerationTask, targets, artifact: Artifact, cfg: DictConfig, stage: str) -> dict:
    """The student this process trained for ``artifact``, or the recipe with the weights it saved."""
    def fit():
        state = saved_weights(artifact, stage)
        parts = build_lm_student(task, targets, cfg)
        parts["module"].lm.load_state_dict(state)
        return parts

    return recall_or_fit(stage, artifact.key, fit, keep=False)
