"""The aggregators on the framework's own tasks, from cached teacher labels: what each one feeds the
student (target accuracy on w2s_train), how far its class shares lean, and how well the Bayesian
model knows its teachers (interval coverage and the error of its accuracy estimates).

    python benchmarks/aggregate_tasks.py [--runs sst2:0,1,2 imdb_small:0 ...] [--label]

Each run is ``experiment:seed`` (the experiment config, e.g. sst2 is the default config); its teacher
labels are read from the run cache (runs/.cache), where a `w2s` run with the same seed left them.
Runs whose labels are not cached are skipped unless --label is given (then the teachers label,
which for the prompted LM takes minutes). Only w2s_train and val are read: the test split stays
sealed. "bayes (before)" is the model as it was before anchoring, abstention evidence and the
dependence weights (abstention=missing, correlated=ignore, intervals=counts), on the same labels.
Prints a table, then ONE line of key=value headline figures (means over the runs).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaks2strong.aggregate.bayes import BayesianDawidSkene  # noqa: E402
from weaks2strong.aggregate.classification import (  # noqa: E402
    CrowdKitDawidSkene,
    MajorityVote,
    MeanProbabilities,
    SingleTeacher,
)
from weaks2strong.evaluate import classification_metrics, estimates_summary, teacher_analysis  # noqa: E402
from weaks2strong.pipeline.classification.aggregate import anchored_rows, best_teacher_by_val_accuracy  # noqa: E402
from weaks2strong.pipeline.classification.teach import (  # noqa: E402
    classification_teacher_key,
    teach,
    teacher_probs,
)
from weaks2strong.runtime.artifacts import Store  # noqa: E402
from weaks2strong.runtime.resolvers import register_resolvers  # noqa: E402

EXPERIMENTS = {"sst2": [], "imdb_small": ["experiment=imdb_small"], "amazon_small": ["experiment=amazon_small"],
               "ag_news": ["experiment=ag_news"], "boolq": ["experiment=boolq"]}
BEFORE = dict(abstention="missing", correlated="ignore", intervals="counts")


def methods(bayes_kw: dict) -> dict:
    """name -> (aggregator factory, uses val gold)."""
    return {
        "bayes (anchored)": (lambda: BayesianDawidSkene(**bayes_kw), True),
        "bayes (unanchored)": (lambda: BayesianDawidSkene(**bayes_kw), False),
        "bayes (before)": (lambda: BayesianDawidSkene(**{**bayes_kw, **BEFORE}), False),
        "majority": (MajorityVote, False),
        "mean": (MeanProbabilities, False),
        "crowdkit_ds": (lambda: CrowdKitDawidSkene(n_iter=100), False),
    }


def load_run(name: str, seed: int, label: bool):
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*EXPERIMENTS[name], f"seed={seed}", "paths.output_dir=/tmp/unused",
                                           "logger=csv"])
    task = instantiate(cfg.task, _convert_="all").without_test()
    store = Store(str(REPO / "runs" / ".cache"))
    missing = [t for t, c in cfg.teachers.items()
               if store.find("teach", classification_teacher_key(task, t, c)) is None]
    if missing and not label:
        return None, f"teacher labels not cached ({', '.join(missing)})"
    labels = teach(task, cfg.teachers, store)
    kw = {k: v for k, v in cfg.aggregator.model.items() if k not in ("_target_", "progress")}
    return (task, labels, kw), None


def score_run(task, labels, bayes_kw) -> list[dict]:
    names = list(labels)
    train, y_train = teacher_probs(task, labels, "w2s_train"), task.labels("w2s_train")
    scores = {n: {"w2s_train": classification_metrics(train[:, t], y_train)} for t, n in enumerate(names)}
    best = best_teacher_by_val_accuracy(task, labels)  # the pipeline's own choice
    candidates = {**methods({**bayes_kw, "progress": False}),
                  f"single ({best})": (lambda: SingleTeacher(teacher=best), False)}
    rows = []
    for method, (make, anchored) in candidates.items():
        model = make()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            probs, gold = anchored_rows(task, labels, "val" if anchored else "none", model)  # as the pipeline fits
            model.fit(probs, names, **({} if gold is None else {"gold": gold}))
            post = model.predict(train).posterior
        share = np.bincount(post.argmax(1), minlength=task.num_classes) / len(post)
        true_share = np.bincount(y_train, minlength=task.num_classes) / len(y_train)
        row = {"method": method, "acc": classification_metrics(post, y_train)["accuracy"],
               "lean": float(np.abs(share - true_share).max()),
               "collapsed": any("one class" in str(w.message) for w in caught)}
        if getattr(model, "teachers_", None):
            summary = estimates_summary(teacher_analysis(model.teachers_, scores))
            row.update(mae=summary["mae"], covered=round(summary["coverage"] * summary["n"]), n=summary["n"])
        rows.append(row)
    return rows


def parse_runs(specs: list[str]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        name, _, seeds = spec.partition(":")
        if name not in EXPERIMENTS:
            raise SystemExit(f"aggregate_tasks: unknown task {name!r} (one of {', '.join(EXPERIMENTS)})")
        out += [(name, int(s)) for s in (seeds or "0").split(",")]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=["sst2:0,1,2", "imdb_small:0", "amazon_small:0", "ag_news:0",
                                                 "boolq:0"])
    p.add_argument("--label", action="store_true", help="let the teachers label runs that are not cached")
    p.add_argument("--out", type=Path, default=None,
                   help="the markdown it writes (default: docs/results/aggregate_tasks.md)")
    args = p.parse_args(argv)
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    table = []
    for name, seed in parse_runs(args.runs):
        loaded, why = load_run(name, seed, args.label)
        if loaded is None:
            print(f"skip {name} seed {seed}: {why}")
            continue
        for row in score_run(*loaded):
            table.append({"task": name, "seed": seed, **row})
    print(f"\n{'task':<13}{'seed':>5}  {'method':<28}{'target acc':>11}{'lean':>7}{'MAE':>7}{'covered':>9}")
    for r in table:
        mae = f"{r['mae']:.3f}" if "mae" in r else "-"
        cov = f"{r['covered']}/{r['n']}" if "n" in r else "-"
        flag = "  COLLAPSED" if r["collapsed"] else ""
        print(f"{r['task']:<13}{r['seed']:>5}  {r['method']:<28}{r['acc']:>11.4f}{r['lean']:>7.3f}{mae:>7}{cov:>9}"
              + flag)
    head = {}
    for key, label in (("bayes (anchored)", "anchored"), ("bayes (unanchored)", "unanchored"),
                       ("bayes (before)", "before"), ("majority", "mv"), ("crowdkit_ds", "ds")):
        rows = [r for r in table if r["method"] == key]
        if rows:
            head[f"acc_{label}"] = f"{np.mean([r['acc'] for r in rows]):.4f}"
            if "n" in rows[0]:
                head[f"coverage_{label}"] = f"{sum(r['covered'] for r in rows) / sum(r['n'] for r in rows):.3f}"
                head[f"mae_{label}"] = f"{np.mean([r['mae'] for r in rows]):.4f}"
    singles = [r for r in table if r["method"].startswith("single")]
    if singles:
        head["acc_single_best_on_val"] = f"{np.mean([r['acc'] for r in singles]):.4f}"
    head["runs"] = len({(r["task"], r["seed"]) for r in table})
    print(" ".join(f"{k}={v}" for k, v in head.items()))
    if table:
        record.write("aggregate_tasks", "The aggregators on the framework's own tasks (cached teacher labels)",
                     args.out, argv=argv)
    else:
        record.discard("no run had its teacher labels cached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
