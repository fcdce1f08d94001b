"""Weak-supervision benchmark: labelling-function votes (WRENCH youtube and hausa) aggregated.

    python benchmarks/aggregate_ws.py [--data /work/shared/datasets/weak_supervision] [--seeds 0 1 2]

Every method learns from the train+valid votes (no labels, unless the row says "+gold") and is
scored on test: accuracy (a tie of m classes counts 1/m, so an all-abstain row scores 1/K) and
``top_share``, the share of test rows predicted as the most common predicted class (near 1 means
the method collapsed to one class). Methods:

- MV: majority vote of the rules that spoke (ties and all-abstain rows stay soft/uniform).
- DS, DS+gold: crowd-kit 1.4.2's Dawid-Skene (EM); test rows get its E-step with the fitted
  priors and confusions; +gold passes valid's labels as ``true_labels``.
- Snorkel, Snorkel+dev: Snorkel 0.10's LabelModel (``fit(L, n_epochs=500, seed=s)``); +dev passes
  valid's labels as ``Y_dev``, which Snorkel uses only to estimate the class balance.
- BDS: our BayesianDawidSkene with ``abstention="evidence"`` (an abstention is an answer whose
  rate depends on the true class, as in Snorkel's label model); BDS+gold anchors valid's rows
  (their classes observed); BDS-uniform pins the class prior at 1/K (``class_balance="uniform"``,
  the assumption Snorkel's label model makes without Y_dev); BDS-missing is the old
  ``abstention="missing"`` (abstentions carry no information), kept to show what it does with
  one-sided rules.

Snorkel is not a dependency of the project. To include it without touching the venv's packages::

    .venv/bin/pip install --no-deps --target data/bench_pkgs snorkel munkres

(data/ is git-ignored; snorkel's other needs, torch, numpy, scipy, pandas, scikit-learn, networkx
and tqdm, are already in the venv). The folder is put on sys.path here only; without it the
Snorkel rows are skipped with the reason printed. Methods with a seed run over ``--seeds`` and
report the mean (± std). Prints a markdown table, then ONE line of key=value headline figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

# passive OpenMP waiting: a spinning second thread only slows a busy shared machine (see aggregate_crowd.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from weaks2strong.aggregate.bayes import BayesianDawidSkene  # noqa: E402
from weaks2strong.aggregate.classification import MajorityVote  # noqa: E402
from weaks2strong.aggregate.io.wrench import load_wrench  # noqa: E402
from weaks2strong.evaluate.metrics import classification_metrics  # noqa: E402

MIRROR = ROOT.parent / "shared" / "datasets"
DEFAULT_DATA = Path(os.environ.get("W2S_DATA_MIRROR", MIRROR)) / "weak_supervision"
BENCH_PKGS = ROOT / "data" / "bench_pkgs"


def top_share(posterior: np.ndarray) -> float:
    """Share of rows predicted as the most common predicted class; a tie of m classes gives each 1/m."""
    top = np.isclose(posterior, posterior.max(-1, keepdims=True), rtol=0, atol=1e-12)  # (N, K)
    return float((top / top.sum(-1, keepdims=True)).sum(0).max() / len(posterior))


# ------------------------------------------------------------------------------------ methods
# each takes (data, fit mask, gold over the fit rows or None, seed) and returns test posteriors (N_test, K)


def run_mv(data, fit, gold, seed):
    test = data.rows("test")
    return MajorityVote().predict_proba(data.probs[test])


def _table(votes: np.ndarray) -> pd.DataFrame:
    task, worker = np.nonzero(votes >= 0)
    return pd.DataFrame({"task": task, "worker": worker, "label": votes[task, worker]})


def run_ds(data, fit, gold, seed):
    from crowdkit.aggregation import DawidSkene

    votes = data.votes
    true = None
    if gold is not None:
        known = np.flatnonzero(gold >= 0)
        true = pd.Series(gold[known], index=known)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DawidSkene(n_iter=100).fit(_table(votes[fit]), true_labels=true)
        # crowd-kit has no predict for new tasks: its own E-step with the fitted priors and errors
        test_votes = votes[data.rows("test")]
        proba = DawidSkene._e_step(_table(test_votes), model.priors_.copy(), model.errors_)
    k = len(data.class_names)
    out = np.full((len(test_votes), k), 1.0 / k)  # a row no rule spoke on: uniform
    cols = [int(c) for c in proba.columns]
    sub = np.zeros((len(proba), k))
    sub[:, cols] = proba.to_numpy()
    out[proba.index.to_numpy()] = sub
    return out


def snorkel_label_model():
    """Snorkel's LabelModel class, or the reason it cannot be used here (a string)."""
    if BENCH_PKGS.is_dir():
        sys.path.insert(0, str(BENCH_PKGS))
    try:
        from snorkel.labeling.model import LabelModel
    except Exception as exc:  # any import failure: report it, go on without Snorkel
        return f"snorkel not importable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); " \
               f"install with: .venv/bin/pip install --no-deps --target data/bench_pkgs snorkel munkres"
    return LabelModel


def make_run_snorkel(label_model_cls):
    def run_snorkel(data, fit, gold, seed):
        votes = data.votes
        kw = {}
        if gold is not None:
            kw["Y_dev"] = gold[gold >= 0]
        model = label_model_cls(cardinality=len(data.class_names), verbose=False)
        model.fit(votes[fit], n_epochs=500, seed=seed, progress_bar=False, **kw)
        return model.predict_proba(votes[data.rows("test")])

    return run_snorkel


def make_run_bds(**kw):
    def run_bds(data, fit, gold, seed):
        model = BayesianDawidSkene(progress=False, seed=seed, **kw)
        extra = {} if gold is None else {"gold": gold}
        model.fit(data.probs[fit], data.teacher_names, **extra)
        return model.predict_proba(data.probs[data.rows("test")])

    return run_bds


# ------------------------------------------------------------------------------------ main


def evaluate(name, method, data, fit, gold, seeds):
    """Per seed: accuracy, top_share, seconds, and whether a one-class warning fired."""
    labels = data.labels[data.rows("test")]
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            post = method(data, fit, gold, seed)
        seconds = time.perf_counter() - t0
        one_class = any("one class" in str(w.message) for w in caught)
        acc = classification_metrics(post, labels)["accuracy"]
        runs.append((acc, top_share(post), seconds, one_class))
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--datasets", nargs="+", default=["youtube", "hausa"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=None,
                    help="the markdown it writes (default: docs/results/aggregate_ws.md)")
    args = ap.parse_args(argv)
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()

    methods = [("MV", run_mv, False, [0]), ("DS", run_ds, False, [0]), ("DS+gold", run_ds, True, [0])]
    label_model = snorkel_label_model()
    if isinstance(label_model, str):
        print(f"NOTE: Snorkel rows skipped: {label_model}")
    else:
        run_snorkel = make_run_snorkel(label_model)
        methods += [("Snorkel", run_snorkel, False, args.seeds), ("Snorkel+dev", run_snorkel, True, args.seeds)]
    methods += [
        ("BDS", make_run_bds(abstention="evidence"), False, args.seeds),
        ("BDS+gold", make_run_bds(abstention="evidence"), True, args.seeds),
        ("BDS-uniform", make_run_bds(abstention="evidence", class_balance="uniform"), False, args.seeds),
        ("BDS-missing", make_run_bds(abstention="missing"), False, args.seeds),
    ]

    rows = []
    for ds in args.datasets:
        data = load_wrench(args.data / ds)
        fit = data.rows("train", "valid")  # (N,) the votes every method learns from
        anchor = np.where(data.rows("valid"), data.labels, -1)[fit]  # valid's gold, -1 on train rows
        for name, method, anchored, seeds in methods:
            try:
                runs = evaluate(name, method, data, fit, anchor if anchored else None, seeds)
            except Exception as exc:  # one method failing must not hide the others' figures
                print(f"NOTE: {name} on {ds} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            acc = np.array([r[0] for r in runs])
            rows.append(dict(dataset=ds, method=name, acc=acc.mean(), sd=acc.std(), seeds=len(runs),
                             top_share=np.mean([r[1] for r in runs]), fit_s=np.mean([r[2] for r in runs]),
                             one_class=sum(r[3] for r in runs)))

    print("| dataset | method | test accuracy (mean ± std) | seeds | top_share | fit s | one-class warnings |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['method']} | {r['acc']:.4f} ± {r['sd']:.4f} | {r['seeds']} | "
              f"{r['top_share']:.3f} | {r['fit_s']:.2f} | {r['one_class']}/{r['seeds']} |")
    for ds in args.datasets:
        data = load_wrench(args.data / ds)
        test = data.rows("test")
        prior = np.bincount(data.labels[test], minlength=len(data.class_names)).max() / test.sum()
        abstain = float(np.isnan(data.probs[test]).all(-1).all(-1).mean())
        print(f"({ds}: {int(test.sum())} test rows, {data.probs.shape[1]} rules, {len(data.class_names)} classes; "
              f"largest test class {prior:.3f}; test rows where every rule abstains {abstain:.3f})")

    short = {"MV": "mv", "DS": "ds", "DS+gold": "ds_gold", "Snorkel": "snorkel", "Snorkel+dev": "snorkel_dev",
             "BDS": "bds", "BDS+gold": "bds_gold", "BDS-uniform": "bds_uniform", "BDS-missing": "bds_missing"}
    key = {}
    for r in rows:
        key[f"{r['dataset']}_{short[r['method']]}"] = f"{r['acc']:.4f}"
    for r in rows:
        if r["method"] == "BDS-missing":
            key[f"{r['dataset']}_bds_missing_top_share"] = f"{r['top_share']:.3f}"
    print(" ".join(f"{k}={v}" for k, v in key.items()))
    record.write("aggregate_ws", "Labelling functions (WRENCH youtube, hausa) aggregated", args.out, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
