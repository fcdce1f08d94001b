"""The preference run (``w2s experiment=hh_harmless``): weak judges → pairwise posterior → DPO students.

teach: each judge (``teachers/judges.py``) learns from weak_train's gold pairs and says (N, 2)
[P(first better), P(second better)] on w2s_train and val. aggregate: the Bayesian aggregator
(``aggregator``), majority vote and the single judge best on val (``preference.majority``,
``preference.single``) read those like any two-class labels. align: the strong student (the
pretrained ``student.lm``, LoRA by default) is DPO'd on w2s_train's pairs five ways:

| student | pairs: chosen / p / w |
|---|---|
| gold | the gold order / 1 / 1 (the ceiling) |
| best_judge | the val-best judge's vote / 1 / 1 |
| majority | the majority vote / 1 / 1 |
| bayes | the posterior's argmax / 1 / 1 |
| bayes_weighted | the posterior's argmax / its probability (cDPO) / the aggregator's confidence weight |

A source that says nothing on a pair (an exact tie, an abstention) drops it. The reference
log-probs are the pretrained student's, computed once per split (``pref_reference``) and shared by
the five. evaluate unseals test: each judge's and each aggregate's accuracy, and each student's
accuracy as a judge by its implicit reward (margin > 0: first better; a tie counts half). PGR
against the best judge and against the Bayesian aggregate, with the gold-DPO'd student as ceiling.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from weaks2strong.evaluate.metrics import pgr
from weaks2strong.pipeline.aggregate import aggregate, best_teacher_on_val, fitted_aggregator
from weaks2strong.pipeline.compute import exclusive, recall, remember
from weaks2strong.pipeline.config import build, config_slice, make_loggers
from weaks2strong.pipeline.tables import split_rows
from weaks2strong.pipeline.teach import fitted_teacher, teach, teacher_key
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
from weaks2strong.tasks.preference import PreferenceTask

log = logging.getLogger("weaks2strong.pipeline")
STUDENTS = {"gold": "student DPO'd on gold (ceiling)", "best_judge": "student DPO'd on the best judge",
            "majority": "student DPO'd on majority vote", "bayes": "student DPO'd on Bayes (unweighted)",
            "bayes_weighted": "student DPO'd on Bayes (p and w)"}


def run_preference(cfg: DictConfig, task: PreferenceTask, store: Store, run_dir: Path) -> dict:
    dev = task.without_test()
    labels = teach(dev, cfg.teachers, store)
    aggregates = {name: aggregate(dev, labels, agg_cfg, store) for name, agg_cfg in aggregator_configs(cfg).items()}
    reference = reference_logprobs(dev, ("w2s_train", "val"), cfg, store)
    students = {}
    for name, (pairs, source) in training_pairs(dev, aggregates, reference).items():
        students[name] = align_student(dev, name, pairs, source, reference, cfg, store, run_dir)
    return evaluate(task, dev, cfg, store, run_dir, labels, aggregates, students)


def aggregator_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    if cfg.get("preference") is None:
        raise UserInputError("preference: no majority/single aggregator configs for the baselines' students; "
                             "run a preference task through its experiment (experiment=hh_harmless)")
    return {"bayes": cfg.aggregator, "majority": cfg.preference.majority, "single": cfg.preference.single}


def student_lm(cfg: DictConfig) -> str:
    from weaks2strong.zoo import resolve_model

    return str(resolve_model(cfg.student.lm, cfg.paths.models_dir))


def collator_for(tok, cfg: DictConfig):
    from weaks2strong.models.preference import PreferenceCollator

    return PreferenceCollator(tok, cfg.align.max_prompt_tokens, cfg.align.max_answer_tokens,
                              cfg.align.get("share_prompt", False))


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
    with exclusive(store, "pref_reference", key) as found:
        if found:
            return found
        started = time.perf_counter()
        tok, lm = load_causal_lm(path, cfg.student.net.trust_remote_code)
        frames = []
        for split in splits:
            scores = score_pairs(lm, collator_for(tok, cfg), pair_rows(task, split), a.batch_size * 2)  # (N, 2)
            frames.append(pd.DataFrame({"split": split, "example_id": task.split(split)["example_id"],
                                        "ref_first": scores[:, 0], "ref_second": scores[:, 1]}))
        with store.create("pref_reference", key, {}, {"lm": path, "splits": list(splits)}) as tmp:
            write_table(tmp / "reference.parquet", pd.concat(frames, ignore_index=True))
        log.info("pref_reference: %s scored in %.1f s", ", ".join(splits), time.perf_counter() - started)
        return store.find("pref_reference", key)


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

    gold = [oriented(row, y == 0) for row, y in zip(rows, task.labels("w2s_train"))]
    return {"gold": (gold, "gold"),
            "best_judge": (from_targets(aggregates["single"], False), aggregates["single"].key),
            "majority": (from_targets(aggregates["majority"], False), aggregates["majority"].key),
            "bayes": (from_targets(aggregates["bayes"], False), aggregates["bayes"].key),
            "bayes_weighted": (from_targets(aggregates["bayes"], True), aggregates["bayes"].key + ":weighted")}


def align_student(task: PreferenceTask, name: str, pairs: list, source: str, reference: Artifact, cfg: DictConfig,
                  store: Store, run_dir: Path) -> Artifact:
    """DPO the pretrained student on ``pairs``; write the pairs, the val margins and (LoRA) the adapters."""
    from weaks2strong.models.preference import check_pairs, reward_margins

    a, stage = cfg.align, "pref_align"
    key = stable_hash(reference.key, source, config_slice(a), config_slice(cfg.trainer), cfg.seeds.student)
    with exclusive(store, stage, key) as found:
        if found:
            log.info("%s %s: reused (%s)", stage, name, found.path)
            return found
        import pytorch_lightning as pl

        from weaks2strong.models.causal_lm import load_causal_lm
        from weaks2strong.models.preference import PreferenceDataModule

        if not pairs:
            raise UserInputError(f"align: the {name} student has no training pair (its source decided no pair "
                                 f"of w2s_train)")
        check_pairs(pairs, f"align {name} pairs")
        started = time.perf_counter()
        tok, lm = load_causal_lm(student_lm(cfg), cfg.student.net.trust_remote_code)
        pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
        module = build(a.model, "align.model")(lm=lm)
        val = pair_rows(task, "val", reference_table(reference))
        gold_val = [oriented(r, y == 0) for r, y in zip(val, task.labels("val"))]
        collator = collator_for(tok, cfg)
        data = PreferenceDataModule(collator, pairs, gold_val, batch_size=a.batch_size, seed=cfg.seeds.student)
        trainer = instantiate(cfg.trainer, max_epochs=a.epochs, logger=make_loggers(cfg.get("logger"), f"align_{name}"),
                              enable_checkpointing=False, default_root_dir=str(run_dir))
        trainer.fit(module, datamodule=data)
        remember(stage, key, {"module": module, "tokenizer": tok})
        margins = reward_margins(module.lm, collator, val, module.beta, a.batch_size * 2)
        with store.create(stage, key, {"reference": reference.key, "pairs": source},
                          {"student": name, "align": config_slice(a), "trainer": config_slice(cfg.trainer)}) as tmp:
            write_table(tmp / "pairs.parquet", pd.DataFrame([vars(r) for r in pairs]))
            write_table(tmp / "margins.parquet", pd.DataFrame({"split": "val", "example_id": task.split("val")[
                "example_id"], "margin": margins}))
            save_student_weights(tmp, module.lm, cfg)
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started, "pairs": len(pairs)})
        log.info("%s %s: %d pairs, DPO'd in %.1f s; val accuracy %.3f", stage, name, len(pairs),
                 time.perf_counter() - started, accuracy_of_margins(margins, task.labels("val")))
        return store.find(stage, key)


def save_student_weights(folder: Path, lm, cfg: DictConfig) -> None:
    """LoRA: the adapters (a few MB), always; full fine-tuning: the whole model with student.save_weights."""
    state = lm.state_dict()
    if cfg.align.model.get("lora"):
        write_weights(folder / "adapters.safetensors", {k: v for k, v in state.items() if "lora_" in k})
    elif cfg.student.get("save_weights", False):
        write_weights(folder / "model.safetensors", state)


def aligned_module(artifact: Artifact, name: str, cfg: DictConfig):
    """(module, tokenizer) of a student: this process's, or the pretrained model with the saved weights."""
    parts = recall("pref_align", artifact.key)
    if parts is not None:
        return parts["module"], parts["tokenizer"]
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
    return module, tok


def accuracy_of_margins(margins: np.ndarray, labels: np.ndarray) -> float:
    """First better when the margin is > 0; a zero margin (no opinion) counts half."""
    right = np.where(margins == 0, 0.5, (margins > 0) == (labels == 0))
    return float(np.mean(right))


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
    with exclusive(store, "pref_margins", key) as found:
        if found is None:
            module, tok = aligned_module(artifact, name, cfg)
            rows = pair_rows(task, "test", reference_table(reference))
            margins = reward_margins(module.lm, collator_for(tok, cfg), rows, module.beta, cfg.align.batch_size * 2)
            described = {"student": name, "split": "test"}
            with store.create("pref_margins", key, {"student": artifact.key}, described) as tmp:
                write_table(tmp / "margins.parquet", pd.DataFrame({"margin": margins}))
            found = store.find("pref_margins", key)
    return found.table("margins")["margin"].to_numpy()


def evaluate(task: PreferenceTask, dev: PreferenceTask, cfg: DictConfig, store: Store, run_dir: Path, labels: dict,
             aggregates: dict[str, Artifact], students: dict[str, Artifact]) -> dict:
    gold = {s: task.labels(s) for s in ("val", "test")}
    rows: dict[str, dict] = {}
    test_probs = {}
    for name, artifact in labels.items():
        teacher_cfg = cfg.teachers[name]
        test_probs[name] = fitted_teacher(dev, name, teacher_cfg, teacher_key(dev, name, teacher_cfg)).predict_proba(
            task, "test")
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
    best = best_teacher_on_val(dev, labels)

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
