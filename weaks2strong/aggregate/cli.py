"""``w2s-aggregate``: aggregate a crowd/teacher label table with the Bayesian Dawid-Skene model.

    w2s-aggregate ANSWERS.csv --out POSTERIORS.csv [--truth TRUTH.csv] [--seed 0] [--no-difficulty]

ANSWERS.csv has ``question,worker,answer`` rows (one label each). POSTERIORS.csv gets one row per
question: ``question,label,confidence,difficulty,p_<class>...``, written atomically (a temporary
file in the same folder, then os.replace) so a crash never leaves half a file. Bad input is one
line on stderr naming the file, row and column, exit code 2, and no output file.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .base import AggregatorError

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """A problem with an input file; the message is one line."""


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read a CSV of strings and check it: named columns present, no empty cell (row = file line)."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what} file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty (expected a header with columns {','.join(columns)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot parse as CSV: {first}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (header has: {', '.join(df.columns)})")
    if len(df) == 0:
        raise InputError(f"{path}: no data rows (empty table)")
    for col in columns:
        values = df[col].str.strip()
        empty = (values == "").to_numpy()
        if empty.any():
            # +2: one for the header line, one because file lines count from 1
            raise InputError(f"{path}: row {int(np.argmax(empty)) + 2}, column {col!r}: empty value")
        df[col] = values
    return df


def _write_atomic(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, index=False, float_format="%.6g")
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="w2s-aggregate",
        description="Aggregate question,worker,answer labels with a Bayesian Dawid-Skene model "
        "(per-question difficulty; Dawid & Skene 1979, Whitehill et al. 2009).",
    )
    p.add_argument("answers", type=Path, help="CSV with question,worker,answer rows")
    p.add_argument("--out", type=Path, required=True, help="where to write the per-question posteriors (CSV)")
    p.add_argument("--truth", type=Path, help="optional CSV with question,truth rows: print accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", action=argparse.BooleanOptionalAction, default=True,
                   help="model a per-question difficulty (default on)")
    p.add_argument("--steps", type=int, default=None, help="maximum SVI steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise InputError(f"{args.out}: --out is a folder; give a file path such as {args.out / 'posteriors.csv'}")
    answers = _read_csv(args.answers, ("question", "worker", "answer"), "answers")
    truth = _read_csv(args.truth, ("question", "truth"), "truth") if args.truth else None
    if truth is not None and truth["question"].duplicated().any():
        row = int(np.argmax(truth["question"].duplicated().to_numpy())) + 2
        raise InputError(f"{args.truth}: row {row}, column 'question': question listed twice")

    from .bayes import BayesianDawidSkene  # torch/pyro load only once the input files look right
    kw = {} if args.steps is None else {"steps": args.steps}
    model = BayesianDawidSkene(difficulty=args.difficulty, seed=args.seed, device=args.device,
                               progress=not args.quiet, **kw)
    started = time.perf_counter()
    try:
        frame, agg = model.fit_predict_table(answers, task="question", worker="worker", label="answer")
    except AggregatorError as exc:
        raise InputError(f"{args.answers}: {exc}") from None
    seconds = time.perf_counter() - started
    classes = [str(c) for c in model.classes_]
    post = frame.to_numpy()  # (N, K)
    out = pd.DataFrame({
        "question": frame.index.astype(str),
        "label": np.asarray(classes, dtype=object)[post.argmax(1)],
        "confidence": agg.confidence,
        "difficulty": agg.difficulty,
    })
    for j, c in enumerate(classes):
        out[f"p_{c}"] = post[:, j]
    _write_atomic(out, args.out)
    print(f"aggregated {len(out)} questions from {answers['worker'].nunique()} workers "
          f"into {args.out} in {seconds:.2f} s", file=sys.stderr)
    if truth is not None:
        gold = truth.set_index("question")["truth"]
        pred = out.set_index("question")["label"]
        common = pred.index.intersection(gold.index)
        if len(common) == 0:
            print("accuracy: no question of the truth file is in the answers", file=sys.stderr)
        else:
            acc = float((pred.loc[common] == gold.loc[common]).mean())
            print(f"accuracy={acc:.4f} on {len(common)} questions with truth")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as exc:
        print(f"w2s-aggregate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
