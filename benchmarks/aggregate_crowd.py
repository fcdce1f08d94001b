"""Crowd benchmark: BayesianDawidSkene against crowd-kit 1.4.2 on the product and dog data sets.

    python benchmarks/aggregate_crowd.py [--data /work/shared/datasets/crowd] [--skip-slow] [--threads N]

Each data set folder holds answer.csv (question,worker,answer) and truth.csv (question,truth).
Methods: crowd-kit MajorityVote, DawidSkene, GLAD, MACE (Wawa is skipped: broken in 1.4.2), our
model with its default per-example difficulty ("BDS") and as plain Bayesian DS on hard votes
("BDS-plain": soft_bins=1, difficulty=False). Every method is timed on the same machine in the same
run (fit + labels). Prints a table, then ONE line of key=value headline figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

# OpenMP threads that spin while waiting turn a busy shared machine's second core into a
# bottleneck (measured: 45 s vs 11 s for the 10^6 fit); passive waiting costs nothing here.
# Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from weaks2strong.aggregate.bayes import BayesianDawidSkene  # noqa: E402

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DEFAULT_DATA = Path(os.environ.get("W2S_DATA_MIRROR", MIRROR)) / "crowd"


def load(folder: Path):
    answers = pd.read_csv(folder / "answer.csv").rename(columns={"question": "task", "answer": "label"})
    truth = pd.read_csv(folder / "truth.csv").set_index("question")["truth"]
    return answers, truth


def crowdkit_methods(skip_slow: bool):
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote

    methods = {"MV": MajorityVote, "DS": DawidSkene}
    if not skip_slow:
        methods.update({"GLAD": GLAD, "MACE": MACE})
    return methods


def run_crowdkit(cls, answers):
    model = cls()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = model.fit_predict(answers)
    return labels, time.perf_counter() - t0


def run_ours(answers, **kw):
    model = BayesianDawidSkene(progress=False, **kw)
    t0 = time.perf_counter()
    frame, _ = model.fit_predict_table(answers)
    seconds = time.perf_counter() - t0
    return frame.idxmax(axis=1), seconds


def accuracy(labels: pd.Series, truth: pd.Series) -> float:
    return float((labels.reindex(truth.index) == truth).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--datasets", nargs="+", default=["product", "dog"])
    ap.add_argument("--skip-slow", action="store_true", help="skip crowd-kit GLAD and MACE (tens of seconds each)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    # warm the imports and lazy initialisation of torch/pyro so that the first timed fit is fair
    warm, _ = load(args.data / args.datasets[0])
    run_ours(warm.head(300), seed=args.seed)

    rows = []
    for name in args.datasets:
        answers, truth = load(args.data / name)
        for method, cls in crowdkit_methods(args.skip_slow).items():
            labels, seconds = run_crowdkit(cls, answers)
            rows.append((method, name, accuracy(labels, truth), seconds))
        for method, kw in (("BDS", {}), ("BDS-plain", {"soft_bins": 1, "difficulty": False})):
            labels, seconds = run_ours(answers, seed=args.seed, **kw)
            rows.append((method, name, accuracy(labels, truth), seconds))

    table = pd.DataFrame(rows, columns=["method", "dataset", "accuracy", "fit_s"])
    print(f"{'method':<11}{'dataset':<9}{'accuracy':>9}{'fit_s':>8}")
    for r in table.itertuples():
        print(f"{r.method:<11}{r.dataset:<9}{r.accuracy:>9.4f}{r.fit_s:>8.2f}")
    print(f"(torch threads: {torch.get_num_threads()})")

    get = lambda m, d, col: float(table[(table.method == m) & (table.dataset == d)][col].iloc[0])  # noqa: E731
    key = {}
    for d in args.datasets:
        key[f"{d}_acc"] = f"{get('BDS', d, 'accuracy'):.4f}"
        key[f"{d}_plain_acc"] = f"{get('BDS-plain', d, 'accuracy'):.4f}"
        key[f"{d}_ds_acc"] = f"{get('DS', d, 'accuracy'):.4f}"
        key[f"{d}_mv_acc"] = f"{get('MV', d, 'accuracy'):.4f}"
        key[f"{d}_fit_s"] = f"{get('BDS', d, 'fit_s'):.2f}"
        key[f"{d}_ds_fit_s"] = f"{get('DS', d, 'fit_s'):.2f}"
        if not args.skip_slow:
            key[f"{d}_glad_acc"] = f"{get('GLAD', d, 'accuracy'):.4f}"
            key[f"{d}_mace_acc"] = f"{get('MACE', d, 'accuracy'):.4f}"
            key[f"{d}_glad_speedup"] = f"{get('GLAD', d, 'fit_s') / get('BDS', d, 'fit_s'):.1f}"
    if "product" in args.datasets:  # the lead's short names: product is the timing reference
        key["ds_fit_s"] = key["product_ds_fit_s"]
        if not args.skip_slow:
            key["glad_speedup"] = key["product_glad_speedup"]
    print(" ".join(f"{k}={v}" for k, v in key.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
