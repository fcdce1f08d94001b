"""The weak-to-strong table as a ledger: many cheap seeds of (task, split seed, aggregator, target form)
cells with a frozen-feature student, appended to a committed results file and printed as a table.

    python benchmarks/w2s_table.py                         # every task, seeds 0-9 (skips cells already there)
    python benchmarks/w2s_table.py --tasks sst2 youtube --seeds 0 1 2
    python benchmarks/w2s_table.py --table-only            # print/write the table from the ledger
    python benchmarks/w2s_table.py --add-task "heldout=task=csv task.path=/data/reviews.csv teachers=sentiment" \
        --tasks heldout --seeds 0 1 2                      # the same table on data of your own

Each (task, split seed) runs the framework's own stages: the task is drawn from a fixed pool
(``task.pool_size``), teach labels w2s_train and val (split-independent teachers from the per-example
cache), aggregate fits each aggregator (the anchored ones with val's gold), and a linear head on
frozen all-mpnet-base-v2 features (features cached per example) is trained on the aggregate's
targets, its learning rate and weight decay chosen on val. The ceiling is the same head on gold;
the best teacher is chosen on val. Test is read once per cell, for the reported numbers.

Tasks: the framework's (sst2, imdb_small, amazon_small, ag_news, boolq) with their experiment's
teachers minus the prompted LLM and the fine-tuned encoder (``LEDGER_DROPS``: SmolLM2 labels 10-40
minutes per task on 2 cores; they join when a session has that time, as new cells), and the WRENCH
text sets (youtube, sms, trec, hausa) with their labelling functions as the teachers (WRENCH's
end-model protocol).

The ledger (``docs/results/w2s_ledger.jsonl``) keys a cell by its config and by a hash of the code
that computes it (the aggregator's module, the student's, this script's protocol version), so a
change to one aggregator re-runs only its cells. The table (``docs/results/w2s_table.md``) is
written by this script from the ledger; never by hand.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from weaks2strong.evaluate.ledger import Ledger, paired_interval, pgr  # noqa: E402

STARTED = time.time()  # code_version refuses source files edited after this
LEDGER = ROOT / "docs" / "results" / "w2s_ledger.jsonl"
TABLE = ROOT / "docs" / "results" / "w2s_table.md"
PROTOCOL = 1  # bump when the cell's protocol changes (sizes, grid, metrics): every cell re-runs
ENCODER = "mpnet-base"
FEATURE_MAX_LENGTH = 128
GRID = {"lr": (1e-3, 1e-2), "weight_decay": (0.0, 1e-2)}
MAX_EPOCHS = 40

# sizes partition a fixed pool (``pool_size``), so later split seeds find most examples labelled
SIZES = {"weak_train": 300, "val": 200, "w2s_train": 1000, "test": 500}
SMALL = {"weak_train": 100, "val": 99, "w2s_train": 300, "test": 199}  # imdb_small, amazon_small: 499 / 199 rows
TASKS = {
    # WRENCH: w2s_train and val redrawn from train+valid each seed, the whole test file every seed
    "youtube": {"wrench": True, "sizes": {"weak_train": 50, "val": 100, "w2s_train": 1000, "test": 250}},
    "sms": {"wrench": True, "sizes": {"weak_train": 50, "val": 200, "w2s_train": 2000, "test": 500}},
    "trec": {"wrench": True, "sizes": {"weak_train": 50, "val": 200, "w2s_train": 2000, "test": 500}},
    "hausa": {"wrench": True, "sizes": {"weak_train": 50, "val": 200, "w2s_train": 2000, "test": 582}},
    "sst2": {"experiment": "sst2", "pool_size": 1500, "sizes": {**SIZES, "test": 872}},  # test: all of SST-2 dev
    "imdb_small": {"experiment": "imdb_small", "pool_size": 499, "sizes": SMALL},
    "amazon_small": {"experiment": "amazon_small", "pool_size": 499, "sizes": SMALL},
    "ag_news": {"experiment": "ag_news", "pool_size": 2000, "sizes": SIZES},  # one pool holds every split
    "boolq": {"experiment": "boolq", "pool_size": 2000, "sizes": SIZES},
}
LEDGER_DROPS = ("smollm2", "minilm2_finetuned")
# name -> Hydra overrides of the aggregator group
AGGREGATORS = {
    "bayes_label_model": ["aggregator=bayes_label_model"],
    "bayes_label_model_unanchored": ["aggregator=bayes_label_model", "aggregator.anchor=none"],
    "bayes": ["aggregator=bayes", "aggregator.model.progress=false"],
    "bayes_unanchored": ["aggregator=bayes_unanchored", "aggregator.model.progress=false"],
    "majority": ["aggregator=majority"],
    "mean": ["aggregator=mean"],
    "crowdkit_ds": ["aggregator=crowdkit_ds"],
    "snorkel": ["aggregator=snorkel"],
    "best_teacher": ["aggregator=single"],
}
REFERENCE = "bayes_label_model"
# the fine-tuned student (the framework's own distill stage: MiniLM-L6 fine-tuned with the task's default
# student config) runs on fewer cells: it costs minutes, not seconds; its rows are the reference and the
# baselines a user would try first
FINETUNED = "minilm"
FINETUNED_AGGREGATORS = (REFERENCE, "majority", "mean", "best_teacher")
# where some rows got no vote, the student trains on every row (their targets: the aggregator's prior, or
# uniform, at the weight the form gives them) or on the covered rows only (WRENCH's end models), whichever
# scores higher on val, for every aggregator alike: on youtube and sms (seed 0) covered rows only cost
# majority vote's student 6 and 3 points, and gained the Bayesian one 1
ROWS = "every row or covered rows only, chosen on val"
# the causal-LM student (issue 26): Gemma-3-270M reading the prompt and scoring each class's verbalizer,
# teacher-forced on an aggregate then DPO'd on its pairs (align=verbalizer_dpo), or DPO'd alone; minutes a
# model, so three tasks, smaller splits, and the rows of the design card: the Bayesian targets, majority
# vote and the best teacher, each with and without DPO, and DPO alone on the Bayesian pairs
CAUSAL = "gemma3"
CAUSAL_TASKS = {"sst2": ["task=sst2", "teachers=sentiment"], "ag_news": ["task=ag_news", "teachers=news"],
                "amazon_small": ["task=amazon_small", "teachers=sentiment"]}
CAUSAL_SIZES = {"sst2": {"weak_train": 300, "val": 200, "w2s_train": 400, "test": 400},
                "ag_news": {"weak_train": 300, "val": 200, "w2s_train": 400, "test": 400},
                "amazon_small": SMALL}
CAUSAL_AGGREGATORS = (REFERENCE, "majority", "best_teacher")
# β and the epochs of each task's DPO (both DPO rows), chosen on val by benchmarks/dpo_choice.py (the Bayesian
# cell's DPO after teacher forcing, seed 2; docs/results/dpo_choice.md). tests/test_ledger.py checks that these
# are what the committed choice ledger chooses, so a choice that moves re-keys the task's cells
CAUSAL_ALIGN = {"sst2": {"beta": 1.0, "epochs": 1}, "ag_news": {"beta": 1.0, "epochs": 1},
                "amazon_small": {"beta": 1.0, "epochs": 2}}
# form of a causal cell: the stage its number comes from (tf: distill's student; tf+dpo / dpo: align's)
CAUSAL_FORMS = ("tf", "tf+dpo", "dpo")
OTHER_STUDENTS = (FINETUNED, CAUSAL)  # students whose cells are not the frozen-feature table's
# the forms in which the reference's targets reach the student: (soft or argmax, confidence weights or 1)
# the students a reader would try instead of the reference: each task's best of them (mean test accuracy
# over the reference's seeds) is what the issue's claim is tested against
BASELINES = ("majority", "mean", "crowdkit_ds", "snorkel", "best_teacher")
FORMS = {"soft_weighted": (True, True), "soft": (True, False), "hard_weighted": (False, True), "hard": (False, False)}


def code_version(*objects) -> str:
    """A hash of the source files that define ``objects`` (classes or modules).

    A file edited after this process started is refused: the process runs the code it imported, and
    its cells would be keyed by the edited file's hash (a session once wrote such a cell and its
    aggregate artifact, and had to delete both)."""
    digest = hashlib.sha256(str(PROTOCOL).encode())
    for obj in objects:
        source = Path(inspect.getsourcefile(obj))
        if source.stat().st_mtime > STARTED:
            raise SystemExit(f"w2s_table: {source} changed after this run started; run it again, so its cells "
                             "are keyed by the code that computes them (the ledger resumes where it stopped)")
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def compose(task_name: str, seed: int, extra: list[str]):
    spec = TASKS[task_name]
    if spec.get("overrides") is not None:  # a task added on the command line (--add-task)
        overrides = [*spec["overrides"], *(f"task.sizes.{k}={v}" for k, v in spec["sizes"].items())]
        if spec.get("pool_size"):
            overrides.append(f"+task.pool_size={spec['pool_size']}")
    elif spec.get("wrench"):
        sizes = spec["sizes"]
        overrides = ["task=wrench", f"task.name={task_name}", *(f"task.sizes.{k}={v}" for k, v in sizes.items())]
    else:
        overrides = [f"experiment={spec['experiment']}", f"+task.pool_size={spec['pool_size']}",
                     *(f"task.sizes.{k}={v}" for k, v in spec["sizes"].items())]
    overrides += [f"seed={seed}", "logger=none", f"paths.cache_dir={ROOT / 'data' / 'ledger_cache'}", *extra]
    return compose_overrides(overrides)


def compose_causal(task_name: str, seed: int, extra: list[str]):
    """The config of a causal-LM cell: the task and its teachers named (the experiments' encoder keys
    would not fit this student), the causal sizes, ``student=gemma3 align=verbalizer_dpo``."""
    run_dir = ROOT / "data" / "ledger_runs" / f"{CAUSAL}-{task_name}-{seed}"
    pool = TASKS[task_name]["pool_size"]
    return compose_overrides([*CAUSAL_TASKS[task_name], f"+task.pool_size={pool}",
                              *(f"task.sizes.{k}={v}" for k, v in CAUSAL_SIZES[task_name].items()),
                              f"student={CAUSAL}", "align=verbalizer_dpo", f"seed={seed}", "logger=none",
                              f"align.model.beta={CAUSAL_ALIGN[task_name]['beta']}",
                              f"align.epochs={CAUSAL_ALIGN[task_name]['epochs']}",
                              f"paths.cache_dir={ROOT / 'data' / 'ledger_cache'}", f"paths.output_dir={run_dir}",
                              *extra])


def compose_overrides(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from weaks2strong.runtime.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def teachers_config(task_name: str, cfg, task):
    from omegaconf import OmegaConf

    if TASKS[task_name].get("wrench"):
        # a rule silent on every w2s_train or val row of this draw cannot be weighed: it sits this seed out
        fired = [np.array([json.loads(v) for v in task.split(s)["weak_labels"]]) >= 0 for s in ("w2s_train", "val")]
        rules = [j for j in range(fired[0].shape[1]) if fired[0][:, j].any() and fired[1][:, j].any()]
        return OmegaConf.create({f"rule_{j}": {"_target_": "weaks2strong.teachers.rules.WrenchRule", "index": j}
                                 for j in rules})
    return OmegaConf.create({k: v for k, v in OmegaConf.to_container(cfg.teachers, resolve=True).items()
                             if k not in LEDGER_DROPS})


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """The framework's accuracy: an abstention (NaN row) or a tie of m classes counts 1/m."""
    from weaks2strong.evaluate import classification_metrics

    return classification_metrics(probs, labels)["accuracy"]


def plan_cells(task_name: str, seed: int, aggregators: list[str], done: set[str], base=None,
               teachers=None, student: tuple | None = None) -> list[tuple]:
    """(aggregator, its config, form, key) of every cell of (task, seed) not yet in the ledger. A key
    hashes the task's spec, the teachers' configs, the aggregator's config, the form, the student's
    spec and the code of the aggregator's module and of the student: a change to one aggregator
    re-runs its cells only, and a teacher added to a task's set makes new cells."""
    from omegaconf import OmegaConf

    from weaks2strong.runtime.artifacts import stable_hash
    from weaks2strong.student import probe as probe_module
    from weaks2strong.student.probe import FeatureEncoder

    base = base if base is not None else compose(task_name, seed, [])
    if teachers is None:
        from weaks2strong.pipeline.common.config import build

        teachers = teachers_config(task_name, base, build(base.task, "task", _convert_="all"))
    teachers_key = stable_hash(OmegaConf.to_container(teachers, resolve=True))
    task_spec = {"task": task_name, **TASKS[task_name], "sizes": dict(base.task.sizes), "seed": seed}
    if student is None:  # the frozen-feature student (its keys predate the fine-tuned one's)
        student_key = (ENCODER, GRID, MAX_EPOCHS)
        student_version = code_version(probe_module, FeatureEncoder)
    else:  # (name, its config slices, its code version)
        student_key, student_version = (student[0], stable_hash(student[1])), student[2]
    # where teachers abstain, which rows train is chosen on val (ROWS); elsewhere every row has a vote
    # and the keys stay as they were
    abstaining = bool(TASKS[task_name].get("wrench") or TASKS[task_name].get("overrides") is not None)
    planned = []
    for agg in aggregators:
        if agg == "gold":  # the fine-tuned student's ceiling
            key = stable_hash(task_spec, teachers_key, agg, *student_key, student_version)
            if key not in done:
                planned.append((agg, None, "soft_weighted", key))
            continue
        agg_cfg = compose(task_name, seed, AGGREGATORS[agg]).aggregator
        agg_version = code_version(build_class(agg_cfg.model._target_))
        forms = FORMS if agg == REFERENCE and student is None else {"soft_weighted": None}
        rows = (ROWS,) if abstaining and student is None else ()
        for form in forms:
            key = stable_hash(task_spec, teachers_key, agg, stable_hash(dict(agg_cfg)), form, *student_key,
                              agg_version, student_version, *rows)
            if key not in done:
                planned.append((agg, agg_cfg, form, key))
    return planned


def run_task_seed(task_name: str, seed: int, aggregators: list[str], ledger: Ledger, done: set[str]) -> int:
    """Every missing cell of (task, seed); returns how many were written."""
    import torch

    from weaks2strong.aggregate.base import AggregatorError
    from weaks2strong.pipeline.classification.aggregate import aggregate_labels, best_teacher_by_val_accuracy
    from weaks2strong.pipeline.classification.teach import teach, teacher_probs, teacher_test_labels
    from weaks2strong.pipeline.common.config import build
    from weaks2strong.pipeline.common.tables import prob_columns, split_rows
    from weaks2strong.runtime.artifacts import Store
    from weaks2strong.student.probe import FeatureEncoder, fit_probe_on_val
    from weaks2strong.zoo import resolve_model

    base = compose(task_name, seed, [])
    task = build(base.task, "task", _convert_="all")
    teachers_cfg = teachers_config(task_name, base, task)
    planned = plan_cells(task_name, seed, aggregators, done, base, teachers_cfg)
    if not planned:
        return 0
    started = time.perf_counter()
    dev = task.without_test()
    store = Store(base.paths.cache_dir)
    labels = teach(dev, teachers_cfg, store)
    teach_seconds = time.perf_counter() - started
    y = {s: task.labels(s) for s in ("w2s_train", "val", "test")}
    best = best_teacher_by_val_accuracy(dev, labels)
    best_val = accuracy(teacher_probs(dev, {best: labels[best]}, "val")[:, 0], y["val"])
    best_test = teacher_test_labels(task, dev, best, teachers_cfg[best], labels[best].key, store)

    encoder = FeatureEncoder(resolve_model(ENCODER), store.root, max_length=FEATURE_MAX_LENGTH, progress=True)
    x = {s: encoder(task.split(s), desc=f"{task_name} {s} features") for s in ("w2s_train", "val", "test")}

    covered = ~np.isnan(teacher_probs(dev, labels, "w2s_train")).all(axis=(1, 2))  # (N,) some teacher answered

    def student(soft, weights, choose_rows=True):
        """(test acc, val acc, setting): the probe with lr, weight decay, epoch and, where some rows got no
        vote, which rows train (ROWS), chosen on val."""
        choices = {}
        for rows, w in (("all", weights), ("covered", weights * covered)):
            if rows == "covered" and (covered.all() or not choose_rows):
                continue
            choices[rows] = fit_probe_on_val(x["w2s_train"], soft, w, x["val"], y["val"], grid=GRID,
                                             max_epochs=MAX_EPOCHS, seed=seed)
        rows = max(choices, key=lambda r: choices[r].val_acc)  # ties: every row (listed first)
        choice = choices[rows]
        with torch.no_grad():
            test_probs = choice.module.eval().net(torch.from_numpy(x["test"])).softmax(-1).numpy()
        setting = {**choice.setting, "rows": rows} if len(choices) > 1 else choice.setting
        return accuracy(test_probs, y["test"]), choice.val_acc, setting

    gold = np.eye(task.num_classes)[y["w2s_train"]]
    ceiling_test, ceiling_val, ceiling_setting = student(gold, np.ones(len(gold)), choose_rows=False)  # gold: every row
    common = {"task": task_name, "seed": seed, "teachers": sorted(labels), "best_teacher": best,
              "best_teacher_val_acc": best_val, "best_teacher_test_acc": accuracy(best_test, y["test"]),
              "ceiling_test_acc": ceiling_test, "ceiling_val_acc": ceiling_val, "ceiling_setting": ceiling_setting,
              "n": {s: len(v) for s, v in y.items()}, "teach_seconds": round(teach_seconds, 1), "protocol": PROTOCOL}
    written = 0
    for agg, agg_cfg, form, key in planned:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                targets = aggregate_labels(dev, labels, versioned(agg_cfg), store)
            except AggregatorError as err:  # e.g. Snorkel on fewer than 3 teachers: no cell, said why
                print(f"  {task_name} seed {seed} {agg}: skipped ({err})", flush=True)
                continue
        rows = split_rows(targets, "targets", dev, "w2s_train")
        posterior = rows[prob_columns(task.num_classes)].to_numpy()
        weights = rows["weight"].to_numpy()
        val_posterior = split_rows(targets, "targets", dev, "val")[prob_columns(task.num_classes)].to_numpy()
        soft_on, weighted = FORMS[form]
        soft = posterior if soft_on else np.eye(task.num_classes)[posterior.argmax(-1)]
        test_acc, val_acc, setting = student(soft, weights if weighted else np.ones(len(weights)))
        record = {**common, "key": key, "aggregator": agg, "form": form, "student": f"probe:{ENCODER}",
                  "student_test_acc": test_acc, "student_val_acc": val_acc, "student_setting": setting,
                  "targets_w2s_acc": accuracy(posterior, y["w2s_train"]),
                  "targets_val_acc": accuracy(val_posterior, y["val"]),  # in-sample for the anchored ones
                  "seconds": round(time.perf_counter() - t0, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        ledger.append(record)
        done.add(key)
        written += 1
        print(f"  {task_name} seed {seed} {agg:30s} {form:14s} targets {record['targets_w2s_acc']:.4f} "
              f"student {test_acc:.4f} (ceiling {ceiling_test:.4f}, best teacher {best} "
              f"{common['best_teacher_test_acc']:.4f})", flush=True)
    return written


def finetuned_plan(task_name: str, seed: int, aggregators: list[str], done: set[str]):
    """(config, task, teachers, the student's config, [(aggregator, key)] of the cells not in ``done``)
    of the fine-tuned student on (task, seed); its ceiling is the aggregator ``gold``."""
    from weaks2strong.pipeline.classification.distill import distill_classifier
    from weaks2strong.pipeline.common.config import build, config_slice, settings_for

    base = compose(task_name, seed, [])
    task = build(base.task, "task", _convert_="all")
    teachers_cfg = teachers_config(task_name, base, task)
    student_cfg = settings_for(base, "student", ceiling=False)  # the student's own settings, not the ceiling's
    student_spec = {"student": config_slice(student_cfg.student), "trainer": config_slice(base.trainer)}
    student_version = code_version(build_class(base.student.model._target_), distill_classifier)
    planned = [(agg, key) for agg, _, form, key in plan_cells(task_name, seed, ["gold", *aggregators], done, base,
                                                                teachers_cfg, student=(FINETUNED, student_spec,
                                                                                       student_version))]
    return base, task, teachers_cfg, student_cfg, planned


def run_finetuned_task_seed(task_name: str, seed: int, aggregators: list[str], ledger: Ledger,
                            done: set[str]) -> int:
    """The fine-tuned student's cells of (task, seed): its ceiling first (a cell with aggregator
    ``gold``), then, where that ceiling's val accuracy is above the best teacher's (the student can
    show something), one cell per aggregator. Every stage goes through the framework's own cached
    stages, so a rerun reuses teachers, aggregates and trained students."""
    from weaks2strong.pipeline.classification.aggregate import aggregate_labels, best_teacher_by_val_accuracy
    from weaks2strong.pipeline.classification.distill import (
        ceiling_config,
        distill_classifier,
        fitted_student,
        test_predictions,
    )
    from weaks2strong.pipeline.classification.teach import teach, teacher_probs, teacher_test_labels
    from weaks2strong.pipeline.common.tables import prob_columns, split_rows
    from weaks2strong.runtime.artifacts import Store

    base, task, teachers_cfg, student_cfg, planned = finetuned_plan(task_name, seed, aggregators, done)
    if not planned:
        return 0
    dev = task.without_test()
    store = Store(base.paths.cache_dir)
    run_dir = ROOT / "data" / "ledger_runs" / f"{task_name}-{seed}"
    labels = teach(dev, teachers_cfg, store)
    y = {s: task.labels(s) for s in ("w2s_train", "val", "test")}
    best = best_teacher_by_val_accuracy(dev, labels)
    best_val = accuracy(teacher_probs(dev, {best: labels[best]}, "val")[:, 0], y["val"])
    best_test = accuracy(teacher_test_labels(task, dev, best, teachers_cfg[best], labels[best].key, store), y["test"])

    def student(targets, cfg, stage):
        t0 = time.perf_counter()
        artifact = distill_classifier(dev, targets, cfg, store, run_dir, stage)
        val = split_rows(artifact, "predictions", dev, "val")[prob_columns(task.num_classes)].to_numpy()
        test = test_predictions(task, fitted_student(dev, targets, artifact, cfg))
        return accuracy(test, y["test"]), accuracy(val, y["val"]), round(time.perf_counter() - t0, 1)

    ceiling_test, ceiling_val, ceiling_seconds = student(None, ceiling_config(base), "ceiling")
    common = {"task": task_name, "seed": seed, "teachers": sorted(labels), "best_teacher": best,
              "best_teacher_val_acc": best_val, "best_teacher_test_acc": best_test,
              "ceiling_test_acc": ceiling_test, "ceiling_val_acc": ceiling_val, "student": FINETUNED,
              "n": {s: len(v) for s, v in y.items()}, "protocol": PROTOCOL}
    clears = ceiling_val > best_val
    written = 0
    for agg, key in planned:
        if agg == "gold":
            record = {**common, "key": key, "aggregator": "gold", "form": "soft_weighted",
                      "student_test_acc": ceiling_test, "student_val_acc": ceiling_val, "ceiling_clears_on_val": clears,
                      "seconds": ceiling_seconds}
        elif not clears:
            continue  # the ceiling cannot beat the best teacher on val here: no weak-to-strong cell to measure
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                agg_cfg = versioned(compose(task_name, seed, AGGREGATORS[agg]).aggregator)
                targets = aggregate_labels(dev, labels, agg_cfg, store)
            rows = split_rows(targets, "targets", dev, "w2s_train")[prob_columns(task.num_classes)].to_numpy()
            test_acc, val_acc, seconds = student(targets, student_cfg, "distill")
            record = {**common, "key": key, "aggregator": agg, "form": "soft_weighted",
                      "student_test_acc": test_acc, "student_val_acc": val_acc,
                      "targets_w2s_acc": accuracy(rows, y["w2s_train"]), "seconds": seconds}
        record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        ledger.append(record)
        done.add(key)
        written += 1
        print(f"  {task_name} seed {seed} {FINETUNED} {agg:20s} student {record['student_test_acc']:.4f} "
              f"(val {record['student_val_acc']:.4f}; best teacher {best} val {best_val:.4f}) {record['seconds']} s",
              flush=True)
    return written


def causal_plan(task_name: str, seed: int, aggregators: list[str]):
    """(task, teachers, [(aggregator, its run's config, {form: key}, the ceiling's key)]) of the causal
    student on (task, seed): per aggregator a run from the teacher-forced student (forms tf, tf+dpo) and,
    for the reference, one from the pretrained model (dpo)."""
    from omegaconf import OmegaConf, open_dict

    from weaks2strong.pipeline.classification import align as align_module
    from weaks2strong.pipeline.classification.distill import distill_classifier
    from weaks2strong.pipeline.common.config import build, config_slice
    from weaks2strong.runtime.artifacts import stable_hash

    base = compose_causal(task_name, seed, [])
    task = build(base.task, "task", _convert_="all")
    teachers = teachers_config(task_name, base, task)
    version = code_version(build_class(base.student.model._target_), distill_classifier, align_module)
    task_spec = {"task": task_name, "causal_sizes": CAUSAL_SIZES[task_name], "seed": seed}
    runs = []
    for agg in aggregators:
        for init in ("distilled", *(("pretrained",) if agg == REFERENCE else ())):
            cfg = compose_causal(task_name, seed, [*AGGREGATORS[agg], f"align.init={init}"])
            with open_dict(cfg):
                cfg.teachers = teachers
                cfg.aggregator = versioned(cfg.aggregator)  # its code keys the aggregate and so the cells, as above
            spec = stable_hash(task_spec, stable_hash(OmegaConf.to_container(teachers, resolve=True)), agg,
                               config_slice(cfg.aggregator), config_slice(cfg.student), config_slice(cfg.align),
                               version)
            forms = {"pretrained": ["dpo"], "distilled": ["tf", "tf+dpo"]}[init]
            runs.append((agg, cfg, {form: stable_hash(spec, form) for form in forms},
                         stable_hash(task_spec, "gold", config_slice(cfg.student), version)))
    return task, teachers, runs


def run_causal_task_seed(task_name: str, seed: int, aggregators: list[str], ledger: Ledger, done: set[str]) -> int:
    """The causal-LM cells of (task, seed) not yet in the ledger, each through the framework's own run
    (``pipeline.run``: teach, aggregate, distill, align, evaluate; every stage cached, so the ceiling and
    the teachers are shared by the cells): per aggregator its teacher-forced student (tf) and that student
    DPO'd (tf+dpo); for the reference also DPO alone (dpo, ``align.init=pretrained``)."""
    from weaks2strong import pipeline

    if task_name not in CAUSAL_TASKS:
        print(f"  {task_name}: no causal-LM cells (tasks: {', '.join(CAUSAL_TASKS)})", flush=True)
        return 0
    task, teachers, runs = causal_plan(task_name, seed, aggregators)
    written = 0
    for agg, cfg, keys, gold_key in runs:
        if all(k in done for k in keys.values()) and gold_key in done:
            continue
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics = pipeline.run(cfg)
        acc = lambda entry, split="test": entry[split]["accuracy"]  # noqa: E731
        best = metrics["teachers"][metrics["best_teacher"]]
        common = {"task": task_name, "seed": seed, "student": CAUSAL, "teachers": sorted(teachers),
                  "best_teacher": metrics["best_teacher"], "best_teacher_test_acc": acc(best),
                  "best_teacher_val_acc": acc(best, "val"), "ceiling_test_acc": acc(metrics["ceiling"]),
                  "ceiling_val_acc": acc(metrics["ceiling"], "val"), "n": dict(task.sizes()), "protocol": PROTOCOL,
                  "seconds": round(time.perf_counter() - t0, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        cells = {"tf": metrics["student"], "tf+dpo": metrics.get("aligned"), "dpo": metrics.get("aligned")}
        if gold_key not in done:
            ledger.append({**common, "key": gold_key, "aggregator": "gold", "form": "tf",
                           "student_test_acc": acc(metrics["ceiling"]),
                           "student_val_acc": acc(metrics["ceiling"], "val")})
            done.add(gold_key)
            written += 1
        for form, key in keys.items():
            if key in done:
                continue
            ledger.append({**common, "key": key, "aggregator": agg, "form": form,
                           "student_test_acc": acc(cells[form]), "student_val_acc": acc(cells[form], "val"),
                           "aggregate_test_acc": acc(metrics["aggregate"]),
                           "targets_w2s_acc": acc(metrics["aggregate"], "w2s_train"),
                           "align": metrics.get("align", {}).get("pairs") if form != "tf" else None})
            done.add(key)
            written += 1
            print(f"  {task_name} seed {seed} {CAUSAL} {agg:20s} {form:7s} test {acc(cells[form]):.4f} "
                  f"(ceiling {common['ceiling_test_acc']:.4f}, best teacher {common['best_teacher_test_acc']:.4f}, "
                  f"aggregate {acc(metrics['aggregate']):.4f})", flush=True)
    return written


def versioned(agg_cfg):
    """``agg_cfg`` with its model's code version in it, so the aggregate artifact a cell reads is keyed
    by the code as well as the config: the stage's own key is the config, and a label model whose code
    changed would otherwise hand a re-run cell the posterior of its old code."""
    from omegaconf import open_dict

    out = agg_cfg.copy()
    with open_dict(out):
        out.code_version = code_version(build_class(agg_cfg.model._target_))
    return out


def build_class(target: str):
    module, _, name = target.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


# ------------------------------------------------------------------------------------------ the table


def latest(records: list[dict]) -> list[dict]:
    """One record per (student, task, seed, aggregator, form): the last written (a changed cell's newer run)."""
    out = {}
    for r in records:
        out[(r.get("student"), r["task"], r["seed"], r["aggregator"], r["form"])] = r
    return list(out.values())


def current_keys(records: list[dict]) -> set[str]:
    """The keys the cells of the ledger's (task, seed)s have under today's configs and code, for every
    student: a cell written before a change to its aggregator or its student is history, not a row of
    the table (it stays in the ledger)."""
    keys = set()
    for task_name, seed in sorted({(r["task"], r["seed"]) for r in records if r.get("student") not in OTHER_STUDENTS}):
        if task_name in TASKS:
            keys |= {key for *_, key in plan_cells(task_name, seed, list(AGGREGATORS), set())}
    for task_name, seed in sorted({(r["task"], r["seed"]) for r in records if r.get("student") == FINETUNED}):
        if task_name in TASKS:
            keys |= {key for _, key in finetuned_plan(task_name, seed, list(FINETUNED_AGGREGATORS), set())[-1]}
    for task_name, seed in sorted({(r["task"], r["seed"]) for r in records if r.get("student") == CAUSAL}):
        if task_name in CAUSAL_TASKS:
            for _, _, forms, gold_key in causal_plan(task_name, seed, list(CAUSAL_AGGREGATORS))[-1]:
                keys |= {gold_key, *forms.values()}
    return keys


def render(records: list[dict], reference: str = REFERENCE, keys: set[str] | None = None) -> tuple[str, str]:
    """(markdown, headline) of the ledger's current cells (``keys``: those of today's code and configs;
    None: the last of each), the frozen-feature table, then the fine-tuned student's."""
    if keys is not None:
        records = [r for r in records if r["key"] in keys]
    records = latest(records)
    finetuned = [r for r in records if r.get("student") == FINETUNED]
    causal = [r for r in records if r.get("student") == CAUSAL]
    records = [r for r in records if r.get("student") not in OTHER_STUDENTS]
    tasks = [t for t in TASKS if any(r["task"] == t for r in records)]
    tasks += sorted({r["task"] for r in records} - set(tasks))  # tasks added by an earlier --add-task
    rows = [(a, "soft_weighted") for a in AGGREGATORS] + [(reference, f) for f in FORMS if f != "soft_weighted"]
    out = ["# The weak-to-strong table (frozen-feature student)", "",
           f"Written by `python benchmarks/w2s_table.py` from `{LEDGER.relative_to(ROOT)}` on "
           f"{time.strftime('%Y-%m-%d')}; do not edit by hand. Student: a linear head on frozen {ENCODER} "
           f"features (max_length {FEATURE_MAX_LENGTH}), lr and weight decay from {GRID} and the epoch "
           f"(≤ {MAX_EPOCHS}) chosen on val accuracy. Each cell: one split seed (the task redrawn from its "
           "fixed pool). Δ: the paired mean difference to the reference student "
           f"(`{reference}`, anchored, soft targets, confidence weights) over the seeds both ran, with its "
           "95% t-interval; ✓ the interval excludes 0 in the reference's favour, ✗ against it. "
           "PGR = (student − best teacher) / (ceiling − best teacher), test accuracy means over seeds; "
           "the best teacher is chosen on val. Targets: the aggregate's accuracy on w2s_train (gold hidden "
           "from the student).", ""]
    summary = {}
    for t in tasks:
        mine = [r for r in records if r["task"] == t]
        seeds = sorted({r["seed"] for r in mine})
        by_seed = {}
        for r in mine:
            by_seed.setdefault(r["seed"], r)
        ceiling = np.array([by_seed[s]["ceiling_test_acc"] for s in seeds])
        weak = np.array([by_seed[s]["best_teacher_test_acc"] for s in seeds])
        gap, lo, hi, n = paired_interval(ceiling, weak)
        clears = n > 1 and gap > 2 * (np.std(ceiling - weak, ddof=1) / np.sqrt(n))
        teachers = ", ".join(sorted({r["best_teacher"] for r in mine}))
        out += [f"## {t}", "",
                f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); ceiling {ceiling.mean():.4f}, best teacher "
                f"(on val: {teachers}) {weak.mean():.4f}; ceiling − best teacher {gap:+.4f} "
                f"[{lo:+.4f}, {hi:+.4f}]: {'clears it by more than 2 SE' if clears else 'does not clear it by 2 SE'}.",
                "", "| student targets | form | seeds | targets acc (w2s) | student test acc | Δ vs reference "
                "[95% CI] | PGR vs best teacher | val acc |", "|---|---|---|---|---|---|---|---|"]
        ref = {r["seed"]: r for r in mine if r["aggregator"] == reference and r["form"] == "soft_weighted"}
        task_rows = {}
        for agg, form in rows:
            cells = {r["seed"]: r for r in mine if r["aggregator"] == agg and r["form"] == form}
            if not cells:
                continue
            acc = np.mean([c["student_test_acc"] for c in cells.values()])
            both = sorted(set(cells) & set(ref))
            delta = "—"
            if (agg, form) != (reference, "soft_weighted") and both:
                m, lo_d, hi_d, nd = paired_interval([ref[s]["student_test_acc"] for s in both],
                                                    [cells[s]["student_test_acc"] for s in both])
                mark = " ✓" if lo_d > 0 else " ✗" if hi_d < 0 else ""
                delta = with_interval(m, lo_d, hi_d, len(both)) + mark
            p = pgr(acc, np.mean([cells[s]["best_teacher_test_acc"] for s in cells]),
                    np.mean([cells[s]["ceiling_test_acc"] for s in cells]))
            task_rows[(agg, form)] = {"acc": acc, "pgr": p, "cells": cells,
                                      "targets": np.mean([c["targets_w2s_acc"] for c in cells.values()]),
                                      "val": np.mean([c["student_val_acc"] for c in cells.values()])}
            out.append(f"| {agg} | {form} | {len(cells)} | {task_rows[(agg, form)]['targets']:.4f} | {acc:.4f} | "
                       f"{delta} | {p:+.3f} | {task_rows[(agg, form)]['val']:.4f} |")
        out.append("")
        summary[t] = {"rows": task_rows, "clears": clears, "ref": ref}
    versus, counts = against_best_baseline(summary, reference)
    out += versus + findings(summary, reference)
    out += render_finetuned(finetuned, reference)
    targets, target_counts = causal_targets(causal, reference)
    out += render_causal(causal, reference) + causal_dpo_gains(causal) + targets
    headline = headline_line(summary, reference) + counts + finetuned_headline(finetuned, reference) + \
        causal_headline(causal, reference) + target_counts
    out += ["", f"Headline: `{headline}`", ""]
    return "\n".join(out), headline


def render_finetuned(records: list[dict], reference: str) -> list[str]:
    """The fine-tuned student's section: per task its ceiling, and where that ceiling clears the best
    teacher on val, each aggregator's student with its paired interval to the reference's."""
    if not records:
        return []
    out = ["", f"## The fine-tuned student ({FINETUNED}, the task's default student config)", "",
           "The framework's own distill stage (MiniLM-L6 fine-tuned on the aggregate's soft targets and "
           "weights; the ceiling on gold with the plain loss). Aggregator cells run only on seeds where the "
           "ceiling's val accuracy is above the best teacher's. Δ: paired mean difference to the reference "
           "with its 95% t-interval over the seeds both ran.", "",
           "| task | seeds | ceiling test | best teacher test | student targets | student test acc | Δ vs reference "
           "[95% CI] | PGR vs best teacher |", "|---|---|---|---|---|---|---|---|"]
    for t in [*TASKS, *sorted({r["task"] for r in records} - set(TASKS))]:
        mine = [r for r in records if r["task"] == t]
        gold = {r["seed"]: r for r in mine if r["aggregator"] == "gold"}
        if not gold:
            continue
        cleared = sorted(s for s, r in gold.items() if r["ceiling_clears_on_val"])
        ceiling = np.mean([gold[s]["ceiling_test_acc"] for s in gold])
        weak = np.mean([gold[s]["best_teacher_test_acc"] for s in gold])
        out.append(f"| {t} | {len(gold)} ({len(cleared)} clear on val) | {ceiling:.4f} | {weak:.4f} | — | — | — | — |")
        ref = {r["seed"]: r for r in mine if r["aggregator"] == reference}
        for agg in FINETUNED_AGGREGATORS:
            cells = {r["seed"]: r for r in mine if r["aggregator"] == agg}
            if not cells:
                continue
            acc = np.mean([c["student_test_acc"] for c in cells.values()])
            both = sorted(set(cells) & set(ref))
            delta = "—"
            if agg != reference and both:
                m, lo, hi, _ = paired_interval([ref[s]["student_test_acc"] for s in both],
                                               [cells[s]["student_test_acc"] for s in both])
                delta = with_interval(m, lo, hi, len(both)) + (" ✓" if lo > 0 else " ✗" if hi < 0 else "")
            p = pgr(acc, np.mean([cells[s]["best_teacher_test_acc"] for s in cells]),
                    np.mean([cells[s]["ceiling_test_acc"] for s in cells]))
            out.append(f"| {t} | {len(cells)} | | | {agg} | {acc:.4f} | {delta} | {p:+.3f} |")
    return out


def render_causal(records: list[dict], reference: str) -> list[str]:
    """The causal-LM student's section: per task its ceiling and each (targets, form) row, with its
    paired interval to teacher forcing on the reference's targets and its PGR against the best teacher
    and against its own aggregate."""
    if not records:
        return []
    out = ["", f"## The causal-LM student ({CAUSAL}: Gemma-3-270M scoring verbalizers, LoRA)", "",
           "Each cell is one run of the framework (`student=gemma3 align=verbalizer_dpo`): tf = teacher forcing "
           "on the aggregate's soft targets and confidence weights; tf+dpo = that student then DPO'd on pairs "
           "from the same aggregate (chosen: the posterior's class, rejected: the runner-up, p = q(chosen), "
           "weight = confidence; reference: the tf student); dpo = DPO alone from the pretrained LM (Tao & Li). "
           f"Δ: paired mean difference to `{reference}` tf over the seeds both ran, 95% t-interval. "
           "PGR vs aggregate uses the aggregate's own test accuracy. DPO's β and epochs per task, chosen on val "
           "(`benchmarks/dpo_choice.py`): "
           + ", ".join(f"{t} β={a['beta']:g}, {a['epochs']} epoch{'s' * (a['epochs'] > 1)}"
                       for t, a in CAUSAL_ALIGN.items()) + ".", "",
           "| task | targets | form | seeds | test acc | Δ vs reference tf [95% CI] | PGR vs best teacher | "
           "PGR vs aggregate | val acc |", "|---|---|---|---|---|---|---|---|---|"]
    for t in CAUSAL_TASKS:
        mine = [r for r in records if r["task"] == t]
        if not mine:
            continue
        ref = {r["seed"]: r for r in mine if r["aggregator"] == reference and r["form"] == "tf"}
        for agg in ("gold", *CAUSAL_AGGREGATORS):
            for form in CAUSAL_FORMS:
                cells = {r["seed"]: r for r in mine if r["aggregator"] == agg and r["form"] == form}
                if not cells:
                    continue
                acc = np.mean([c["student_test_acc"] for c in cells.values()])
                weak = np.mean([c["best_teacher_test_acc"] for c in cells.values()])
                ceiling = np.mean([c["ceiling_test_acc"] for c in cells.values()])
                both = sorted(set(cells) & set(ref))
                delta = "—"
                if (agg, form) != (reference, "tf") and agg != "gold" and both:
                    m, lo, hi, _ = paired_interval([cells[s]["student_test_acc"] for s in both],
                                                   [ref[s]["student_test_acc"] for s in both])
                    delta = with_interval(m, lo, hi, len(both))
                vs_agg = "—" if agg == "gold" else \
                    f"{pgr(acc, np.mean([c['aggregate_test_acc'] for c in cells.values()]), ceiling):+.3f}"
                out.append(f"| {t} | {agg} | {'ceiling' if agg == 'gold' else form} | {len(cells)} | {acc:.4f} | "
                           f"{delta} | {pgr(acc, weak, ceiling):+.3f} | {vs_agg} | "
                           f"{np.mean([c['student_val_acc'] for c in cells.values()]):.4f} |")
    return out


def causal_dpo_gains(records: list[dict]) -> list[str]:
    """What DPO adds to each aggregator's own teacher-forced student: tf+dpo − tf of the same run, paired
    over its seeds (test, with a 95% t-interval, and val), the seeds where it helped, and the pairs it
    trained on (a row whose posterior ties for the top class makes no pair, so majority vote over two
    teachers DPOs on the rows where they agree)."""
    out = ["", "### What DPO adds to each aggregator's teacher-forced student", "",
           "Paired over seeds: tf+dpo − tf of the same run (same aggregate, same splits). Pairs: mean pairs "
           "DPO trained on / w2s_train rows.", "",
           "| task | targets | seeds | Δ test [95% CI] | Δ val | seeds up / down | pairs / rows |",
           "|---|---|---|---|---|---|---|"]
    for t in CAUSAL_TASKS:
        for agg in CAUSAL_AGGREGATORS:
            tf = {r["seed"]: r for r in records if (r["task"], r["aggregator"], r["form"]) == (t, agg, "tf")}
            dpo = {r["seed"]: r for r in records if (r["task"], r["aggregator"], r["form"]) == (t, agg, "tf+dpo")}
            seeds = sorted(set(tf) & set(dpo))
            if not seeds:
                continue
            test = [dpo[s]["student_test_acc"] - tf[s]["student_test_acc"] for s in seeds]  # (S,)
            val = [dpo[s]["student_val_acc"] - tf[s]["student_val_acc"] for s in seeds]  # (S,)
            m, lo, hi, _ = paired_interval([dpo[s]["student_test_acc"] for s in seeds],
                                           [tf[s]["student_test_acc"] for s in seeds])
            ci = with_interval(m, lo, hi, len(seeds))
            kept = [dpo[s]["align"] / dpo[s]["n"]["w2s_train"] for s in seeds if dpo[s].get("align")]
            pairs = f"{np.mean(kept):.2f}" if kept else "—"
            out.append(f"| {t} | {agg} | {len(seeds)} | {ci} | {np.mean(val):+.4f} | "
                       f"{sum(d > 0 for d in test)} / {sum(d < 0 for d in test)} | {pairs} |")
    return out


def with_interval(m: float, lo: float, hi: float, n: int) -> str:
    """A paired difference and its 95% interval; one seed has no interval, so say so instead of ±inf."""
    return f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]" if n > 1 else f"{m:+.4f} (1 seed, no interval)"


def at_least(a: float, b: float) -> bool:
    """a ≥ b for means of accuracies: two rows right on the same number of test rows tie, whatever order
    their floats were summed in."""
    return a >= b - 1e-9


def causal_targets(records: list[dict], reference: str) -> tuple[list[str], str]:
    """Issue 26's numbers per task, over the seeds where every causal row ran (so each mean is over the
    same splits): teacher forcing then DPO on the reference's targets against teacher forcing alone on
    them and against the best baseline row (majority vote / best teacher, tf or tf+dpo), its PGR against
    the best teacher, and DPO alone's gap to teacher forcing. The headline counts the tasks that meet each."""
    rows = [(reference, f) for f in CAUSAL_FORMS] + [(a, f) for a in CAUSAL_AGGREGATORS if a != reference
                                                     for f in ("tf", "tf+dpo")]
    out = ["", "### Issue 26's targets (seeds where every row ran)", "",
           "| task | seeds | ref tf | ref tf+dpo | tf+dpo ≥ tf | best baseline row | its acc | tf+dpo ≥ it | "
           "PGR tf+dpo vs best teacher | DPO alone − tf (points) |", "|---|---|---|---|---|---|---|---|---|---|"]
    met = {"ge_tf": 0, "ge_baselines": 0}
    pgrs, gaps, tasks = [], [], 0
    for t in CAUSAL_TASKS:
        cells = {(r["aggregator"], r["form"], r["seed"]): r for r in records if r["task"] == t}
        seeds = sorted(s for s in {k[2] for k in cells} if all((a, f, s) in cells for a, f in rows))
        if not seeds:
            continue
        tasks += 1
        mean = {(a, f): float(np.mean([cells[(a, f, s)]["student_test_acc"] for s in seeds])) for a, f in rows}
        tf, tf_dpo = mean[(reference, "tf")], mean[(reference, "tf+dpo")]
        best = max((k for k in rows if k[0] != reference), key=mean.get)
        weak = np.mean([cells[(reference, "tf", s)]["best_teacher_test_acc"] for s in seeds])
        ceiling = np.mean([cells[(reference, "tf", s)]["ceiling_test_acc"] for s in seeds])
        p, gap = pgr(tf_dpo, weak, ceiling), 100 * (mean[(reference, "dpo")] - tf)
        ge_tf, ge_best = at_least(tf_dpo, tf), at_least(tf_dpo, mean[best])
        met["ge_tf"] += ge_tf
        met["ge_baselines"] += ge_best
        pgrs.append(p)
        gaps.append(gap)
        out.append(f"| {t} | {len(seeds)} | {tf:.4f} | {tf_dpo:.4f} | {'✓' if ge_tf else '✗'} | "
                   f"{best[0]} {best[1]} | {mean[best]:.4f} | {'✓' if ge_best else '✗'} | {p:+.3f} | "
                   f"{gap:+.1f} |")
    if not tasks:
        return [], ""
    headline = (f" {CAUSAL}_target_tasks={tasks} {CAUSAL}_tf_dpo_ge_tf={met['ge_tf']} "
                f"{CAUSAL}_tf_dpo_ge_baselines={met['ge_baselines']} {CAUSAL}_mean_pgr_tf_dpo={np.mean(pgrs):.3f} "
                f"{CAUSAL}_dpo_alone_gap_points_min={min(gaps):+.1f}")
    return out, headline


def causal_headline(records: list[dict], reference: str) -> str:
    if not records:
        return ""
    ref = [r for r in records if r["aggregator"] == reference]
    by_form = {f: [r for r in ref if r["form"] == f] for f in CAUSAL_FORMS}
    mean = {f: np.mean([pgr(r["student_test_acc"], r["best_teacher_test_acc"], r["ceiling_test_acc"]) for r in rs])
            if rs else float("nan") for f, rs in by_form.items()}
    return (f" {CAUSAL}_cells={len(records)} {CAUSAL}_tasks={len({r['task'] for r in records})} "
            f"{CAUSAL}_pgr_tf={mean['tf']:.3f} {CAUSAL}_pgr_tf_dpo={mean['tf+dpo']:.3f} "
            f"{CAUSAL}_pgr_dpo={mean['dpo']:.3f}")


def finetuned_headline(records: list[dict], reference: str) -> str:
    if not records:
        return ""
    gold = [r for r in records if r["aggregator"] == "gold"]
    ref = [r for r in records if r["aggregator"] == reference]
    return (f" {FINETUNED}_ceilings={len(gold)} {FINETUNED}_tasks_clear_on_val="
            f"{len({r['task'] for r in gold if r['ceiling_clears_on_val']})} {FINETUNED}_reference_cells={len(ref)}")


def against_best_baseline(summary: dict, reference: str) -> tuple[list[str], str]:
    """Per task, the reference against the baseline student (BASELINES) with the best mean test accuracy
    over the reference's seeds: the paired Δ (reference − baseline) and its 95% interval; and the
    headline's counts of tasks where the interval favours the reference, includes 0, or is against it."""
    out = ["## The reference against each task's best baseline", "",
           f"Best baseline: the best mean test accuracy among {', '.join(BASELINES)} over the reference's "
           "seeds. Δ: reference − baseline, paired over those seeds, with its 95% t-interval.", "",
           "| task | best baseline | its acc | reference acc | Δ [95% CI] | outcome |", "|---|---|---|---|---|---|"]
    tally = {"favours": 0, "includes_0": 0, "against": 0}
    for t, s in summary.items():
        seeds = sorted(s["ref"])
        rivals = {agg: s["rows"][(agg, "soft_weighted")]["cells"] for agg in BASELINES
                  if (agg, "soft_weighted") in s["rows"]}
        rivals = {agg: cells for agg, cells in rivals.items() if set(seeds) <= set(cells)}
        if not seeds or not rivals:
            continue
        mine = [s["ref"][k]["student_test_acc"] for k in seeds]
        best = max(rivals, key=lambda a: np.mean([rivals[a][k]["student_test_acc"] for k in seeds]))
        theirs = [rivals[best][k]["student_test_acc"] for k in seeds]
        m, lo, hi, _ = paired_interval(mine, theirs)
        outcome = "favours" if lo > 0 else "against" if hi < 0 else "includes_0"
        tally[outcome] += 1
        said = {"favours": "✓ favours the reference", "against": "✗ against it", "includes_0": "includes 0"}[outcome]
        out.append(f"| {t} | {best} | {np.mean(theirs):.4f} | {np.mean(mine):.4f} | "
                   f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}] | {said} |")
    out.append("")
    counts = "".join(f" {k}_vs_best_baseline={v}" for k, v in tally.items())
    return out, counts


def findings(summary: dict, reference: str) -> list[str]:
    """Per task: where the reference's targets are more accurate than another aggregate's but its
    student is not better (the student not following its targets is a finding, not noise)."""
    out = ["## Targets against students", ""]
    for t, s in summary.items():
        ref = s["rows"].get((reference, "soft_weighted"))
        if ref is None:
            continue
        for (agg, form), row in s["rows"].items():
            if form != "soft_weighted" or agg == reference:
                continue
            if ref["targets"] > row["targets"] and ref["acc"] <= row["acc"]:
                out.append(f"- {t}: `{reference}` targets {ref['targets']:.4f} > `{agg}` {row['targets']:.4f}, yet "
                           f"its student {ref['acc']:.4f} ≤ {row['acc']:.4f}.")
    if len(out) == 2:
        out.append("- none: wherever the reference's targets were more accurate, its student was at least as good.")
    return out


def headline_line(summary: dict, reference: str) -> str:
    means = {}
    for s in summary.values():
        for (agg, form), row in s["rows"].items():
            # a row competes for best_student only on the reference's seeds, all of them: a mean over
            # other seeds would compare different splits
            if form == "soft_weighted" and set(s["ref"]) <= set(row["cells"]):
                means.setdefault(agg, []).append(np.mean([row["cells"][k]["student_test_acc"] for k in s["ref"]]))
    complete = {a: float(np.mean(v)) for a, v in means.items() if len(v) == len(summary)}
    best = max(complete, key=complete.get) if complete else "none"
    pgrs = [s["rows"][(reference, "soft_weighted")]["pgr"] for s in summary.values()
            if s["clears"] and (reference, "soft_weighted") in s["rows"]]
    n_seeds = min((len(s["ref"]) for s in summary.values()), default=0)
    return (f"tasks={len(summary)} min_seeds={n_seeds} best_student={best} "
            f"reference_mean_acc={complete.get(reference, float('nan')):.4f} "
            f"mean_pgr_where_ceiling_clears={np.mean(pgrs) if pgrs else float('nan'):.3f} "
            f"tasks_where_ceiling_clears={sum(s['clears'] for s in summary.values())}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--add-task", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="a task of your own, as Hydra overrides, e.g. 'heldout=task=csv task.path=/x.csv "
                             "teachers=sentiment' (sizes: --add-task-sizes); it joins --tasks")
    parser.add_argument("--add-task-sizes", nargs=4, type=int, metavar=("WEAK_TRAIN", "VAL", "W2S_TRAIN", "TEST"),
                        default=[SIZES[k] for k in ("weak_train", "val", "w2s_train", "test")])
    parser.add_argument("--tasks", nargs="+", help="default: every built-in task, and those added")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--aggregators", nargs="+", choices=list(AGGREGATORS),
                        help=f"default: all for the probe, {' '.join(FINETUNED_AGGREGATORS)} for {FINETUNED}")
    parser.add_argument("--student", choices=("probe", FINETUNED, CAUSAL), default="probe",
                        help=f"probe: a head on frozen {ENCODER} features (seconds); {FINETUNED}: the framework's "
                             f"fine-tuned student (minutes); {CAUSAL}: the causal-LM student, teacher forcing then "
                             f"DPO ({', '.join(CAUSAL_TASKS)}; minutes a model)")
    parser.add_argument("--ledger", type=Path, default=LEDGER)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--table-only", action="store_true", help="print and write the table; run nothing")
    args = parser.parse_args(argv)
    for added in args.add_task:
        name, _, overrides = added.partition("=")
        if not name or not overrides or name in TASKS:
            parser.error(f"--add-task {added!r}: expected NEW_NAME=OVERRIDES with a name not in {sorted(TASKS)}")
        sizes = dict(zip(("weak_train", "val", "w2s_train", "test"), args.add_task_sizes))
        TASKS[name] = {"overrides": overrides.split(), "sizes": sizes}
    unknown = sorted(set(args.tasks or []) - set(TASKS))
    if unknown:
        parser.error(f"--tasks {' '.join(unknown)}: not a task; choose from {sorted(TASKS)} or --add-task")
    args.tasks = args.tasks or list(TASKS)
    logging.basicConfig(level=logging.WARNING)
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning.pytorch",
                 "lightning.pytorch.utilities.rank_zero", "weaks2strong"):  # a trainer per head: no banners
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ledger = Ledger(args.ledger)
    if not args.table_only:
        done = ledger.keys()
        run = {"probe": run_task_seed, FINETUNED: run_finetuned_task_seed, CAUSAL: run_causal_task_seed}[args.student]
        aggregators = args.aggregators or list({"probe": AGGREGATORS, FINETUNED: FINETUNED_AGGREGATORS,
                                                CAUSAL: CAUSAL_AGGREGATORS}[args.student])
        for seed in args.seeds:  # seed-major: every task gets its first seeds before any gets its tenth
            for task_name in args.tasks:
                wrote = run(task_name, seed, aggregators, ledger, done)
                print(f"{task_name} seed {seed}: {wrote} new cell(s)", flush=True)
    text, headline = render(ledger.records(), keys=current_keys(ledger.records()))
    from weaks2strong.runtime.artifacts import write_text

    write_text(args.table, text)
    print(text)
    print(headline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
