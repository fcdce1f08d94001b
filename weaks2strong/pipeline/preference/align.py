"""The preference path's align stage: the strong student (the pretrained ``student.lm``, LoRA by
default) DPO'd on w2s_train's pairs, one student per source (see ``run.py``), by the one DPO trainer
(``common/dpo.py``). The reference log-probs are the pretrained student's, computed once per split
(``pref_reference``) and shared by the students."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import build, config_slice, settings_for
from weaks2strong.pipeline.common.dpo import Kept, Policy, dpo_collator, dpo_stage
from weaks2strong.pipeline.common.stage import cached_stage, recall_or_fit
from weaks2strong.pipeline.common.tables import split_rows
from weaks2strong.runtime.artifacts import Artifact, Store, frame_hash, stable_hash, write_table
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks.preference import PreferenceTask

log = logging.getLogger("weaks2strong.pipeline")


def student_lm(cfg: DictConfig) -> str:
    from weaks2strong.zoo import resolve_model

    return str(resolve_model(cfg.student.lm, cfg.paths.models_dir))



def pair_rows(task: PreferenceTask, split: str, reference: pd.DataFrame | None = None):
    """A split's pairs in the shown order (chosen = first), with the reference log-probs when given."""
    from weaks2strong.models.preference import PreferenceRow

    prompts, firsts, seconds = task.responses(split)
    refs = np.full((len(prompts), 2), np.nan) if reference is None else \
        reference.loc[task.split(split)["example_id"], ["ref_first", "ref_second"]].to_numpy()
    return [PreferenceRow(p, a, b, ref_chosen=float(r[0]), ref_rejected=float(r[1]))
            for p, a, b, r in zip(prompts, firsts, seconds, refs)]


def reference_logprobs(task: PreferenceTask, splits: tuple[str, ...], cfg: DictConfig, store: Store) -> Artifact:
    """log π_ref(first | prompt) and log π_ref(second | prompt) for each pair of ``splits``, by the
    pretrained student: computed once, shared by every student (no reference model while training)."""
    from weaks2strong.models.causal_lm import load_causal_lm
    from weaks2strong.models.preference import score_pairs

    a, path = cfg.align, student_lm(cfg)
    key = stable_hash(path, a.max_prompt_tokens, a.max_answer_tokens, {s: frame_hash(task.split(s)) for s in splits})

    def compute():
        started = time.perf_counter()
        tok, lm = load_causal_lm(path, cfg.student.net.trust_remote_code)
        frames = []
        for split in splits:
            scores = score_pairs(lm, dpo_collator(tok, cfg), pair_rows(task, split), a.batch_size * 2)  # (N, 2)
            frames.append(pd.DataFrame({"split": split, "example_id": task.split(split)["example_id"],
                                        "ref_first": scores[:, 0], "ref_second": scores[:, 1]}))
        with store.create("pref_reference", key, {}, {"lm": path, "splits": list(splits)}) as tmp:
            write_table(tmp / "reference.parquet", pd.concat(frames, ignore_index=True))
        log.info("pref_reference: %s scored in %.1f s", ", ".join(splits), time.perf_counter() - started)

    return cached_stage(store, "pref_reference", key, compute)


def reference_table(reference: Artifact) -> pd.DataFrame:
    return reference.table("reference").set_index("example_id")


def oriented(row, first_wins: bool, p: float = 1.0, weight: float = 1.0):
    """A shown-order row (chosen = first) as the pair a source says: the winner as chosen, its reference
    log-prob with it."""
    from dataclasses import replace

    if first_wins:
        return replace(row, p=p, weight=weight)
    return replace(row, chosen=row.rejected, rejected=row.chosen, ref_chosen=row.ref_rejected,
                   ref_rejected=row.ref_chosen, p=p, weight=weight)


def training_pairs(task: PreferenceTask, aggregates: dict[str, Artifact], reference: Artifact) -> dict:
    """name -> (w2s_train's PreferenceRows for that student, a key naming where they came from)."""
    rows = pair_rows(task, "w2s_train", reference_table(reference))

    def from_targets(artifact: Artifact, soft: bool):
        table = split_rows(artifact, "targets", task, "w2s_train")
        out = []
        for row, q, w in zip(rows, table["p_0"].to_numpy(), table["weight"].to_numpy()):
            if q == 0.5 or not np.isfinite(q):  # the source says nothing about this pair
                continue
            out.append(oriented(row, q > 0.5, max(q, 1 - q) if soft else 1.0, float(w) if soft else 1.0))
        return out

    return {"gold": (gold_pairs(task, reference), "gold"),
            "best_judge": (from_targets(aggregates["single"], False), aggregates["single"].key),
            "majority": (from_targets(aggregates["majority"], False), aggregates["majority"].key),
            "bayes": (from_targets(aggregates["bayes"], False), aggregates["bayes"].key),
            "bayes_weighted": (from_targets(aggregates["bayes"], True), aggregates["bayes"].key + ":weighted")}


def gold_pairs(task: PreferenceTask, reference: Artifact) -> list:
    """w2s_train's pairs in their gold order (p = w = 1): the ceiling's training pairs."""
    rows = pair_rows(task, "w2s_train", reference_table(reference))
    return [oriented(row, y == 0) for row, y in zip(rows, task.labels("w2s_train"))]


def align_student(task: PreferenceTask, name: str, pairs: list, source: str, reference: Artifact, cfg: DictConfig,
                  store: Store, run_dir: Path) -> Artifact:
    """DPO the pretrained student on ``pairs``; write the pairs, the val margins and (LoRA) the adapters.
    The gold student (the ceiling) trains with its own settings (``align.ceiling``, see ``settings_for``)."""
    cfg = settings_for(cfg, "align", ceiling=name == "gold")
    a, stage = cfg.align, "pref_align"
    key = stable_hash(reference.key, source, config_slice(a), config_slice(cfg.trainer), cfg.seeds.student)

    def val_rows():
        return pair_rows(task, "val", reference_table(reference))

    def policy() -> Policy:
        from weaks2strong.models.causal_lm import load_causal_lm

        tok, lm = load_causal_lm(student_lm(cfg), cfg.student.net.trust_remote_code)
        gold_val = [oriented(r, y == 0) for r, y in zip(val_rows(), task.labels("val"))]
        return Policy(tok, lm, dpo_collator(tok, cfg), pairs, gold_val)

    def finish(parts: dict, policy: Policy) -> Kept:
        from weaks2strong.models.preference import reward_margins

        module = parts["module"]
        margins = reward_margins(module.lm, policy.collator, val_rows(), module.beta, a.batch_size * 2)
        accuracy = accuracy_of_margins(margins, task.labels("val"))
        return Kept({"margins": pd.DataFrame({"split": "val", "example_id": task.split("val")["example_id"],
                                              "margin": margins})},
                    student_weights(module.lm, cfg), "DPO'd in {seconds:.1f} s; val accuracy " + f"{accuracy:.3f}")

    return dpo_stage(store, stage, key, pairs, name=f"{stage} {name}", where=f"align {name} pairs", cfg=cfg,
                     run_dir=run_dir, logger_prefix=f"align_{name}", policy=policy, finish=finish,
                     inputs={"reference": reference.key, "pairs": source},
                     config={"student": name, "align": config_slice(a), "trainer": config_slice(cfg.trainer)},
                     no_pairs=f"align: the {name} student has no training pair (its source decided no pair "
                              f"of w2s_train)")


def student_weights(lm, cfg: DictConfig) -> dict[str, dict]:
    """LoRA: the adapters (a few MB), always; full fine-tuning: the whole model with student.save_weights."""
    state = lm.state_dict()
    if cfg.align.model.get("lora"):
        return {"adapters.safetensors": {k: v for k, v in state.items() if "lora_" in k}}
    if cfg.student.get("save_weights", False):
        return {"model.safetensors": state}
    return {}


def aligned_module(artifact: Artifact, name: str, cfg: DictConfig):
    """(module, tokenizer) of a student: this process's, or the pretrained model with the saved weights."""
    def fit():
        from safetensors.torch import load_file

        from weaks2strong.models.causal_lm import load_causal_lm

        files = [f for f in ("adapters.safetensors", "model.safetensors") if (artifact.path / f).is_file()]
        if not files:
            raise UserInputError(f"align {name}: {artifact.path} saved no weights to judge the test split with "
                                 f"(full fine-tuning and student.save_weights=false); rerun with "
                                 f"student.save_weights=true, or delete {artifact.path} to train it again")
        tok, lm = load_causal_lm(student_lm(cfg), cfg.student.net.trust_remote_code)
        module = build(cfg.align.model, "align.model")(lm=lm)
        missing, unexpected = module.lm.load_state_dict(load_file(artifact.path / files[0]), strict=False)
        if unexpected or (files[0] == "model.safetensors" and missing):
            raise UserInputError(f"align {name}: {artifact.path / files[0]} does not fit align.model "
                                 f"({len(unexpected)} unexpected, {len(missing)} missing weights)")
        return {"module": module, "tokenizer": tok}

    parts = recall_or_fit("pref_align", artifact.key, fit, keep=False)
    return parts["module"], parts["tokenizer"]


def accuracy_of_margins(margins: np.ndarray, labels: np.ndarray) -> float:
    """First better when the margin is > 0; a zero margin (no opinion) counts half."""
    right = np.where(margins == 0, 0.5, (margins > 0) == (labels == 0))
    return float(np.mean(right))
