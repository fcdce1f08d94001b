"""align (``align=verbalizer_dpo``): the causal-LM verbalizer student (``student=gemma3``) DPO'd on
pairs of its class verbalizers, by the one DPO trainer (``common/dpo.py``).

The pairs come from what teacher forcing trains on: the aggregate's soft targets q_i and confidence
weights w_i on w2s_train (``distill.soft_label_rows``). Each example gives one pair: the verbalizer of
its posterior's argmax class (chosen) against the runner-up's (rejected), believed at p = q_i(chosen)
(cDPO's label noise ε = 1 − q_i(chosen)) and weighted w_i (``preference_loss``). An example whose
posterior ties for the top class prefers nothing: it is dropped, and counted (``summary.json``).

``align.init``, where the policy and the reference start:
- ``distilled``: the teacher-forced student (distill's ``student`` stage): DPO after teacher forcing;
- ``pretrained``: the student's pretrained LM: DPO alone, with no teacher forcing first (Tao & Li
  2024's setting).
The start's LoRA adapters, if it has any, are merged into its weights: the reference is then that
model exactly, and the DPO's own adapters (``align.model.lora``) switched off give it back. Its
log-probs on the pairs are computed once, before training, and kept with them (``pairs.parquet``).

The aligned student is a verbalizer classifier like the one it started from: it predicts w2s_train
and val (its val accuracy on gold is what β and the epochs are chosen by), and evaluate asks it for
test (``aligned_student``).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.models import predict_proba
from weaks2strong.pipeline.classification.distill import (
    build_classifier_student,
    fitted_student,
    lora_state,
    soft_label_rows,
)
from weaks2strong.pipeline.common.config import build, config_slice, settings_for
from weaks2strong.pipeline.common.dpo import Kept, Policy, dpo_collator, dpo_stage
from weaks2strong.pipeline.common.stage import recall_or_fit, remember
from weaks2strong.pipeline.common.tables import split_frame, task_key
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.student import StudentParts
from weaks2strong.student.verbalize import ANSWER_CUE, verbalizer_prompts
from weaks2strong.tasks import Task

log = logging.getLogger("weaks2strong.pipeline")

STAGE = "align"
METHOD = "verbalizer_dpo"  # align.method of conf/align/verbalizer_dpo.yaml
LABELS = {"distilled": "student + DPO", "pretrained": "DPO alone"}  # the aligned student's row in the report


def aligning(cfg: DictConfig) -> bool:
    return cfg.get("align", {}).get("method", "none") == METHOD


def verbalizer_pairs(prompts: list[str], verbalizers: list[str], soft: np.ndarray, weights: np.ndarray,
                     balance: bool = False):
    """(pairs, tied): one ``PreferenceRow`` per example (chosen = its argmax class's verbalizer,
    rejected = the runner-up's, p = q(chosen), weight = its confidence weight), and the number of
    examples dropped because their top two classes tie. soft: (N, K) rows on the simplex; weights: (N,).

    ``balance``: the weights rescaled per chosen class so that each class's pairs weigh what the
    posterior's mass of that class is (``class_balanced``)."""
    from weaks2strong.models.preference import PreferenceRow

    soft = np.asarray(soft, dtype=float)
    ranked = np.argsort(-soft, axis=1, kind="stable")  # (N, K): a tie below the top goes to the lower class
    rows = np.arange(len(soft))
    first, second = ranked[:, 0], ranked[:, 1]  # (N,)
    q_first, q_second = soft[rows, first], soft[rows, second]  # (N,)
    tied = q_first == q_second
    if balance:
        weights = class_balanced(np.asarray(weights, dtype=float), np.where(tied, -1, first), soft)
    pairs = [PreferenceRow(prompt, verbalizers[a], verbalizers[b], p=float(q), weight=float(w))
             for prompt, a, b, q, w, t in zip(prompts, first, second, q_first, weights, tied) if not t]
    return pairs, int(tied.sum())


def class_balanced(weights: np.ndarray, chosen: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """(N,) ``weights`` rescaled per chosen class c (``chosen``: (N,), -1 = no pair) so that the pairs
    choosing c weigh, together, the posterior's mass of c (Σ_i q_i(c)), and the total is unchanged.

    Why: confidence weights follow how sure the aggregate is, and it is surer of one class than of
    another (SST-2 at 64 rows: chosen Positive, mean p 0.90 and weight 0.79; Negative 0.76 and 0.52).
    The pairs' gradient, w · (p − σ(βΔ)), then pulls every prompt towards the surer class: after DPO
    the student called 86% of test Positive, against 53% before (a class bias; its AUROC rose)."""
    out = weights.copy()
    mass = soft.sum(0)  # (K,) the posterior's class mass
    for c in range(soft.shape[1]):
        picked = chosen == c
        total = weights[picked].sum()
        if total > 0:
            out[picked] *= mass[c] / total
    kept = chosen >= 0
    return out * (weights[kept].sum() / max(out[kept].sum(), 1e-12))


def gold_pairs(prompts: list[str], verbalizers: list[str], labels: np.ndarray) -> list:
    """The gold class's verbalizer against every other class's (p = w = 1): DPO's val metrics."""
    from weaks2strong.models.preference import PreferenceRow

    return [PreferenceRow(prompt, verbalizers[y], verbalizers[k]) for prompt, y in zip(prompts, labels)
            for k in range(len(verbalizers)) if k != y]


def check_verbalizers(task: Task) -> None:
    """One line on a verbalizer that cannot be one side of a pair: empty, or another class's word."""
    seen: dict[str, int] = {}
    for i, (verbalizer, name) in enumerate(zip(task.verbalizers, task.classes)):
        word = verbalizer.strip()
        if not word:
            raise UserInputError(f"task.verbalizers[{i}] (class '{name}' of task '{task.name}') is "
                                 f"{verbalizer!r}: align={METHOD} needs a word per class to prefer")
        if word in seen:
            raise UserInputError(f"task.verbalizers[{seen[word]}] and [{i}] of task '{task.name}' are both "
                                 f"'{word}': align={METHOD} cannot prefer one class's word to the other's")
        seen[word] = i


def check_completions(task: Task, tok, max_answer_tokens: int) -> None:
    """One line on two verbalizers that the student reads as the same tokens (cut at ``max_answer_tokens``)."""
    from weaks2strong.models.causal_lm import CandidateRow, encode_row

    _, completions = encode_row(tok, CandidateRow("", list(task.verbalizers), []), 1, max_answer_tokens)
    for i, ids in enumerate(completions):
        if ids in completions[:i]:
            j = completions.index(ids)
            raise UserInputError(f"task.verbalizers[{j}] '{task.verbalizers[j]}' and [{i}] '{task.verbalizers[i]}' "
                                 f"are the same {max_answer_tokens} tokens to the student "
                                 f"(align.max_answer_tokens): a pair of them prefers nothing")


def start_key(task: Task, student: Artifact, cfg: DictConfig) -> str:
    """What the policy starts from: the distilled student's artifact, or the pretrained LM as the
    student's recipe reads it (its model, prompts and truncation; not its training settings)."""
    if cfg.align.init == "distilled":
        return student.key
    recipe = {k: v for k, v in config_slice(cfg.student).items() if k in ("encoder", "recipe", "data", "net")}
    return stable_hash("pretrained", task_key(task), recipe)


def align_key(task: Task, targets: Artifact, student: Artifact, cfg: DictConfig) -> str:
    return stable_hash(start_key(task, student, cfg), targets.key, config_slice(cfg.align),
                       config_slice(cfg.trainer), cfg.seeds.student)


def starting_student(task: Task, targets: Artifact, student: Artifact, cfg: DictConfig) -> StudentParts:
    """The distilled student (this process's, or rebuilt from its saved weights), or the recipe's
    untrained student (its LM as pretrained: LoRA's B starts at zero)."""
    if cfg.align.init == "distilled":
        return fitted_student(task, targets, student, settings_for(cfg, "student", ceiling=False))
    return build_classifier_student(task, targets, cfg)


def plain_lm(parts: StudentParts, shared: bool):
    """The start's LM as one plain model: its LoRA adapters merged into its weights, every weight
    trainable (the DPO module decides which train). ``shared``: the start keeps its own row (the
    distilled student), so it is copied first."""
    lm = copy.deepcopy(parts.module.lm) if shared else parts.module.lm
    if hasattr(lm, "merge_and_unload"):  # peft: W + (α/r)·BA, the model the adapters made
        lm = lm.merge_and_unload()
    for p in lm.parameters():
        p.requires_grad_(True)
    return lm


def verbalizer_module(lm, cfg: DictConfig):
    """The aligned LM as the verbalizer classifier it was trained to be (no adapters added, no optimizer)."""
    from weaks2strong.models.verbalizer import VerbalizerModule

    return VerbalizerModule(lm, optimizer=None, chunk_size=cfg.align.model.get("chunk_size", 1024))


def align_verbalizers(task: Task, targets: Artifact, student: Artifact, cfg: DictConfig, store: Store,
                      run_dir: Path) -> Artifact:
    """DPO the verbalizer student (``align.init``) on the aggregate's pairs; write the pairs with
    their reference log-probs, the aligned student's w2s_train and val predictions, its LoRA adapters
    and ``summary.json`` (pairs, ties dropped, val accuracy)."""
    cfg = settings_for(cfg, "align", ceiling=False)  # no yardstick here: an align.ceiling is not ours
    a = cfg.align
    key = align_key(task, targets, student, cfg)
    check_verbalizers(task)
    soft, weights = soft_label_rows(task, targets)
    prompts = verbalizer_prompts(task, "w2s_train", cfg.student.recipe.get("answer_cue", ANSWER_CUE))
    pairs, tied = verbalizer_pairs(prompts, list(task.verbalizers), soft, weights, a.get("balance", False))
    if tied:
        log.info("%s: %d of %d w2s_train examples dropped: their posterior ties for the top class", STAGE, tied,
                    len(soft))
    held: dict[str, StudentParts] = {}

    def policy() -> Policy:
        from weaks2strong.models.preference import with_reference

        start = held["start"] = starting_student(task, targets, student, cfg)
        check_completions(task, start.tokenizer, a.max_answer_tokens)
        lm = plain_lm(start, shared=a.init == "distilled")
        collator = dpo_collator(start.tokenizer, cfg)
        val = gold_pairs(verbalizer_prompts(task, "val", cfg.student.recipe.get("answer_cue", ANSWER_CUE)),
                         list(task.verbalizers), task.labels("val"))
        # the reference log-probs, once: no reference model while training
        return Policy(start.tokenizer, lm, collator, with_reference(lm, collator, pairs, a.batch_size),
                      with_reference(lm, collator, val, a.batch_size))

    def finish(parts: dict, _: Policy) -> Kept:
        start = held.pop("start")
        aligned = StudentParts(verbalizer_module(parts["module"].lm, cfg), start.data, start.predict_loader,
                               start.tokenizer)
        remember(STAGE, key, aligned)  # what evaluate recalls: the classifier, not the DPO module
        predictions = {split: predict_proba(aligned.module, start.predict_loader(task, split)).double().numpy()
                       for split in ("w2s_train", "val")}
        accuracy = float(np.mean(predictions["val"].argmax(1) == task.labels("val")))
        frame = pd.concat([split_frame(task, split, p) for split, p in predictions.items()], ignore_index=True)
        weights = aligned_weights(parts["module"].lm, cfg)
        summary = {"init": a.init, "pairs": len(pairs), "ties_dropped": tied, "w2s_train": len(soft),
                   "val_accuracy": accuracy}
        return Kept({"predictions": frame}, weights,
                    f"{tied} tied dropped; DPO'd ({a.init}) in {{seconds:.1f}} s; val accuracy {accuracy:.3f}",
                    records={"summary": summary})

    return dpo_stage(store, STAGE, key, pairs, name=STAGE, where=f"{STAGE} pairs from {targets.key}", cfg=cfg,
                     run_dir=run_dir, logger_prefix=STAGE, policy=policy, finish=finish,
                     inputs={"start": start_key(task, student, cfg), "targets": targets.key},
                     config={"align": config_slice(a), "trainer": config_slice(cfg.trainer)},
                     no_pairs=f"{STAGE}: no w2s_train example has a top class (every posterior ties), so no pair "
                              f"to align on")


def aligned_weights(lm, cfg: DictConfig) -> dict[str, dict]:
    """LoRA: the adapters (a few MB), always; full fine-tuning: the whole model with student.save_weights."""
    if cfg.align.model.get("lora"):
        return {"adapters.safetensors": lora_state(lm)}
    if cfg.student.get("save_weights", False):
        return {"model.safetensors": lm.state_dict()}
    return {}


def aligned_student(task: Task, targets: Artifact, student: Artifact, artifact: Artifact,
                    cfg: DictConfig) -> StudentParts:
    """The classifier this process aligned for ``artifact``, or its start with the weights the artifact saved."""
    cfg = settings_for(cfg, "align", ceiling=False)

    def fit():
        from safetensors.torch import load_file

        files = [artifact.path / f for f in ("adapters.safetensors", "model.safetensors")
                 if (artifact.path / f).is_file()]
        if not files:
            raise UserInputError(f"{STAGE} {artifact.path} saved no weights to predict the test split with (full "
                                 f"fine-tuning and student.save_weights=false); rerun with student.save_weights=true, "
                                 f"or delete {artifact.path} to align again")
        start = starting_student(task, targets, student, cfg)
        module = build(cfg.align.model, "align.model")(lm=plain_lm(start, shared=cfg.align.init == "distilled"))
        saved = load_file(files[0])
        missing, unexpected = module.lm.load_state_dict(saved, strict=False)  # after wrapping: LoRA's keys
        if unexpected or (files[0].name == "model.safetensors" and missing):
            raise UserInputError(f"{files[0]} does not fit align.model ({len(unexpected)} unexpected, {len(missing)} "
                                 f"missing weights): delete {artifact.path} to align again")
        return StudentParts(verbalizer_module(module.lm, cfg), start.data, start.predict_loader, start.tokenizer)

    return recall_or_fit(STAGE, artifact.key, fit)
