"""Scale benchmark: ours (BayesianLabelModel) on a synthetic sparse rule set, 10^6 rows x 100 rules.

    python benchmarks/label_model_scale.py [--rows 1000000] [--rules 100] [--density 0.02] [--classes 2]
                                           [--one-sided 0.5] [--seed 0] [--no-snorkel] [--snorkel-timeout 300]

The set is built directly as a ``Votes`` list (``Votes.from_codes``), never as a dense matrix:

- a class prior pi ~ Dirichlet(5, ..., 5) and each row's latent class y ~ pi;
- each rule is one-sided (it only ever says its class c, chosen at random; a share ``--one-sided``
  of the rules, half by default) or
  two-sided, with an accuracy a ~ Beta(4, 2) floored at 1/K + 0.05, and fires on a share of the rows
  drawn around ``--density`` (uniform in [0.5, 1.5] x density);
- a two-sided rule fires on rows chosen at random and says the true class with probability a, else
  a wrong class at random; a one-sided rule's precision is a: of the rows it fires on, a share a
  (binomially) are drawn from class c and the rest from the other classes (so it fires more often
  on its class, as a keyword rule does).

Ours is fitted on all rows and scored on all of them against the synthetic truth (accuracy, a tie
of m classes counting 1/m), beside majority vote. Snorkel's LabelModel (a reference; needs
data/bench_pkgs, see label_models.py) gets the same votes as its dense (rows, rules) int8 matrix; it
runs in a forked child that is stopped after ``--snorkel-timeout`` seconds. Prints a small table,
then ONE line ``rows=... rules=... votes=... fit_s=... acc=... mv_acc=...``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see aggregate_crowd.py

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from weaks2strong.aggregate.classification.bayes_label_model import BayesianLabelModel  # noqa: E402
from weaks2strong.aggregate.classification.majority import MajorityVote  # noqa: E402
from weaks2strong.aggregate.io.wrench import accuracy  # noqa: E402
from weaks2strong.aggregate.votes import Votes  # noqa: E402

BENCH_PKGS = ROOT / "data" / "bench_pkgs"


def simulate(rows: int, rules: int, density: float, k: int, seed: int = 0, one_sided_share: float = 0.5):
    """(Votes, truth (rows,), one-sided (rules,) bool, accuracy (rules,)), built as a vote list."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.full(k, 5.0))
    y = rng.choice(k, size=rows, p=pi)  # (N,)
    by_class = [np.flatnonzero(y == c) for c in range(k)]
    one_sided = rng.random(rules) < one_sided_share  # (T,)
    acc = np.maximum(rng.beta(4.0, 2.0, rules), 1.0 / k + 0.05)  # (T,)
    rate = np.clip(density * rng.uniform(0.5, 1.5, rules), 0.0, 1.0)
    row_parts, src_parts, lab_parts = [], [], []
    for j in range(rules):
        n_fire = rng.binomial(rows, rate[j])
        if one_sided[j]:
            c = rng.integers(k)
            rest = np.concatenate([by_class[o] for o in range(k) if o != c])
            n_right = min(rng.binomial(n_fire, acc[j]), len(by_class[c]))
            n_wrong = min(n_fire - n_right, len(rest))
            fired = np.concatenate([rng.choice(by_class[c], n_right, replace=False),
                                    rng.choice(rest, n_wrong, replace=False)])
            label = np.full(len(fired), c)
        else:
            fired = rng.choice(rows, n_fire, replace=False)
            right = rng.random(n_fire) < acc[j]
            wrong = (y[fired] + rng.integers(1, k, n_fire)) % k  # a wrong class, uniformly
            label = np.where(right, y[fired], wrong)
        row_parts.append(fired)
        src_parts.append(np.full(len(fired), j))
        lab_parts.append(label)
    votes = Votes.from_codes(np.concatenate(row_parts), np.concatenate(src_parts), np.concatenate(lab_parts),
                             rows, rules, k, [f"rule_{j}" for j in range(rules)])
    return votes, y, one_sided, acc


def _snorkel_child(conn, votes: Votes, k: int, seed: int) -> None:
    try:
        if BENCH_PKGS.is_dir():
            sys.path.insert(0, str(BENCH_PKGS))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from snorkel.labeling.model import LabelModel
        t0 = time.perf_counter()
        L = np.full((votes.n_rows, votes.n_sources), -1, dtype=np.int8)  # 10^6 x 100: 100 MB
        L[votes.row, votes.source] = votes.label
        model = LabelModel(cardinality=k, verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(L, n_epochs=500, seed=seed, progress_bar=False)
            fit_s = time.perf_counter() - t0
            post = model.predict_proba(L)
        conn.send(("ok", fit_s, post.astype(np.float32)))
    except BaseException as exc:  # noqa: BLE001  (a MemoryError included): report it to the parent
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None))
    finally:
        conn.close()


def run_snorkel(votes: Votes, k: int, seed: int, timeout: float):
    """(fit seconds, posterior) or a string saying why Snorkel did not give one."""
    if not BENCH_PKGS.is_dir():
        return ("not installed; .venv/bin/pip install --no-deps --target data/bench_pkgs snorkel munkres "
                "hyperlm")
    try:
        ctx = mp.get_context("fork")
    except ValueError:
        return "needs a forking platform"
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_snorkel_child, args=(child, votes, k, seed), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    child.close()
    got = None
    if parent.poll(timeout):
        try:
            got = parent.recv()
        except EOFError:
            got = None
    waited = time.perf_counter() - t0
    if proc.is_alive():
        proc.terminate()
    proc.join(10)
    if got is None:
        if waited >= timeout:
            return f"stopped after {timeout:.0f} s (too slow)"
        return f"its process died (exit code {proc.exitcode}; out of memory?)"
    if got[0] != "ok":
        return f"failed: {got[1]}"
    return got[1], got[2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--density", type=float, default=0.02, help="mean share of rows a rule fires on")
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--one-sided", type=float, default=0.5, help="share of the rules that are one-sided")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-snorkel", action="store_true", help="skip the Snorkel reference")
    ap.add_argument("--snorkel-timeout", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=None,
                    help="the markdown it writes (default: docs/results/label_model_scale.md)")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.rules < 1 or args.classes < 2 or not 0 < args.density <= 1 \
            or not 0 <= args.one_sided <= 1:
        print("error: need --rows >= 1, --rules >= 1, --classes >= 2, 0 < --density <= 1 and 0 <= --one-sided <= 1",
              file=sys.stderr)
        return 2

    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    t0 = time.perf_counter()
    votes, y, one_sided, acc = simulate(args.rows, args.rules, args.density, args.classes, args.seed,
                                        args.one_sided)
    sim_s = time.perf_counter() - t0
    covered = float((votes.votes_per_row() > 0).mean())
    print(f"simulated {votes.n_votes:,} votes in {sim_s:.1f} s: {args.rows:,} rows x {args.rules} rules, "
          f"{args.classes} classes, {int(one_sided.sum())} one-sided rules casting "
          f"{one_sided[votes.source].mean():.3f} of the votes, rule accuracy "
          f"{acc.min():.2f}-{acc.max():.2f}, {covered:.3f} of rows with a vote")

    model = BayesianLabelModel(seed=args.seed, progress=False)
    t0 = time.perf_counter()
    model.fit(votes)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = model.predict_proba(votes)
    predict_s = time.perf_counter() - t0
    ours_acc = accuracy(post, y)

    cov = votes.votes_per_row() > 0  # (N,) rows with at least one vote
    mv_post = MajorityVote().predict_proba(votes)
    mv_acc = accuracy(mv_post, y)
    rows = [("MV", "—", "—", mv_acc, accuracy(mv_post[cov], y[cov])),
            ("ours", f"{fit_s:.2f}", f"{predict_s:.2f}", ours_acc, accuracy(post[cov], y[cov]))]
    if args.no_snorkel:
        print("NOTE: Snorkel skipped (--no-snorkel)")
    else:
        got = run_snorkel(votes, args.classes, args.seed, args.snorkel_timeout)
        if isinstance(got, str):
            print(f"NOTE: Snorkel skipped: {got}")
        else:
            rows.append(("Snorkel (dense int8 L)", f"{got[0]:.2f}", "—", accuracy(got[1], y),
                         accuracy(got[1][cov], y[cov])))

    print()
    print("| method | rows | rules | votes | fit s | predict s | accuracy vs truth | on rows with a vote |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f, p, a, a_cov in rows:
        print(f"| {name} | {args.rows:,} | {args.rules} | {votes.n_votes:,} | {f} | {p} | {a:.4f} | {a_cov:.4f} |")
    print(f"(accuracy: a tie of m classes counts 1/m; a row with no vote is uniform for MV; {cov.mean():.3f} of "
          "rows have a vote)")
    if getattr(model, "chosen_", None) is not None:
        print(f"(ours chose: {model.chosen_})")
    print(f"rows={args.rows} rules={args.rules} votes={votes.n_votes} fit_s={fit_s:.2f} acc={ours_acc:.4f} "
          f"mv_acc={mv_acc:.4f}")
    record.write("label_model_scale", "BayesianLabelModel on a synthetic sparse rule set", args.out, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
