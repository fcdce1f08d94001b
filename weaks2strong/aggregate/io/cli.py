"""``w2s-aggregate``: aggregate a crowd/teacher label table with a label model (default: the Bayesian
Dawid-Skene model; ``--method`` picks another of the family).

    w2s-aggregate ANSWERS.csv --out POSTERIORS.csv [--truth TRUTH.csv] [--gold GOLD.csv] [--seed 0] [--no-difficulty]
    w2s-aggregate --format wrench FOLDER --out POSTERIORS.csv [--gold valid] [--method bayes_label_model]

ANSWERS.csv has ``question,worker,answer`` rows (one label each). POSTERIORS.csv gets one row per
question: ``question,label,confidence,difficulty,p_<class>...``, written atomically (a temporary
file in the same folder, then os.replace; ``artifacts.write_csv``) so a crash never leaves half a
file. Bad input is one line on stderr naming the file, row and column, exit code 2, and no output file.

``--gold GOLD.csv`` (``question,truth`` rows) makes those questions' classes observed in the fit
(semi-supervised anchoring); their own posteriors are still scored as if unlabelled.

``--format wrench``: FOLDER is a WRENCH data set (train/valid/test.json, label.json; see wrench.py),
each labelling function a teacher. The model is fitted on the train and valid votes (no labels
unless ``--gold valid``), every row of every split gets a posterior (test with the fitted globals),
and the accuracy of each split with labels is printed. The output's first columns are
``split,id`` (ids repeat across splits).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from weaks2strong.runtime.artifacts import write_csv

from ..base import AggregatorError
from .crowd import long_to_probs, table_to_long

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="w2s-aggregate",
        description="Aggregate question,worker,answer labels with a Bayesian Dawid-Skene model "
        "(per-question difficulty; Dawid & Skene 1979, Whitehill et al. 2009).",
    )
    p.add_argument("answers", type=Path,
                   help="CSV with question,worker,answer rows (--format wrench: a WRENCH data set folder)")
    p.add_argument("--format", choices=("csv", "wrench"), default="csv",
                   help="csv: a question,worker,answer table; wrench: labelling-function votes (default: wrench "
                   "for a folder, else csv)")
    p.add_argument("--out", type=Path, required=True, help="where to write the per-question posteriors (CSV)")
    p.add_argument("--truth", type=Path, help="optional CSV with question,truth rows: print accuracy")
    p.add_argument("--gold", help="observed classes for the fit: a question,truth CSV (csv format), or the "
                   "name of a split whose labels anchor the fit (wrench format: train or valid)")
    p.add_argument("--method", choices=tuple(METHODS), default="bayes",
                   help="bayes: Bayesian Dawid-Skene with per-question difficulty (default); bayes_label_model: "
                   "the hierarchical model for sparse rules and crowds; majority, weighted_majority, dawid_skene "
                   "(crowd-kit's EM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", action=argparse.BooleanOptionalAction, default=True,
                   help="model a per-question difficulty (default on)")
    p.add_argument("--steps", type=int, default=None, help="maximum SVI steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _unique_questions(df: pd.DataFrame, path: Path) -> None:
    if df["question"].duplicated().any():
        row = int(np.argmax(df["question"].duplicated().to_numpy())) + 2
        raise InputError(f"{path}: row {row}, column 'question': question listed twice")


METHODS = {"bayes": "BayesianDawidSkene", "bayes_label_model": "BayesianLabelModel", "majority": "MajorityVote",
           "weighted_majority": "WeightedMajorityVote", "dawid_skene": "CrowdKitDawidSkene"}


def _model(args: argparse.Namespace):
    """The chosen label model; torch/pyro load only once the input files look right."""
    if args.method == "bayes":
        from ..bayes import BayesianDawidSkene

        kw = {} if args.steps is None else {"steps": args.steps}
        return BayesianDawidSkene(difficulty=args.difficulty, seed=args.seed, device=args.device,
                                  progress=not args.quiet, **kw)
    from .. import classification

    cls = getattr(classification, METHODS[args.method])
    model = cls(seed=args.seed, progress=not args.quiet) if args.method == "bayes_label_model" else cls()
    if args.gold and not model.supports_gold:
        raise InputError(f"--gold: --method {args.method} cannot use gold labels (methods that can: bayes, "
                         "bayes_label_model, weighted_majority)")
    return model


def _gold_codes(path: Path, gold: pd.DataFrame, labels) -> np.ndarray:
    """(N,) class index per question of the answers, -1 where the gold file says nothing."""
    classes = [str(c) for c in labels.classes]
    code = pd.Index(classes).get_indexer(gold["truth"])
    if (code < 0).any():
        row = int(np.argmax(code < 0))
        raise InputError(f"{path}: row {row + 2}, column 'truth': class {gold['truth'].iloc[row]!r} is not "
                         f"among the answers' classes ({', '.join(classes)})")
    task = pd.Index([str(q) for q in labels.tasks]).get_indexer(gold["question"])
    if (task < 0).all():
        raise InputError(f"{path}: no question of the gold file is in the answers")
    if (task < 0).any():  # a gold row without answers constrains nothing in the fit; say so, go on
        print(f"w2s-aggregate: note: {int((task < 0).sum())} questions of {path} have no answers and are "
              f"not used", file=sys.stderr)
    out = np.full(len(labels.tasks), -1, dtype=np.int64)
    out[task[task >= 0]] = code[task >= 0]
    return out


def run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise InputError(f"{args.out}: --out is a folder; give a file path such as {args.out / 'posteriors.csv'}")
    wrench = args.format == "wrench" or args.answers.is_dir()  # a folder can only be a WRENCH data set
    return _run_wrench(args) if wrench else _run_csv(args)


def _run_csv(args: argparse.Namespace) -> int:
    answers = _read_csv(args.answers, ("question", "worker", "answer"), "answers")
    truth = _read_csv(args.truth, ("question", "truth"), "truth") if args.truth else None
    if truth is not None:
        _unique_questions(truth, args.truth)
    gold = _read_csv(Path(args.gold), ("question", "truth"), "gold") if args.gold else None
    if gold is not None:
        _unique_questions(gold, Path(args.gold))

    model = _model(args)
    started = time.perf_counter()
    try:
        if gold is None and args.method == "bayes":
            frame, agg = model.fit_predict_table(answers, task="question", worker="worker", label="answer")
            classes, questions, post = model.classes_, frame.index, frame.to_numpy()  # post: (N, K)
        else:
            # fit_table takes no gold, and only the Bayesian DS has it: the dense (N, T, K) array serves all
            labels = table_to_long(answers, "question", "worker", "answer")
            kw = {} if gold is None else {"gold": _gold_codes(Path(args.gold), gold, labels)}
            agg = model.fit_predict(long_to_probs(labels), [str(w) for w in labels.workers], **kw)
            classes, questions, post = labels.classes, pd.Index(labels.tasks), agg.posterior
    except AggregatorError as exc:
        raise InputError(f"{args.answers}: {exc}") from None
    seconds = time.perf_counter() - started
    classes = [str(c) for c in classes]
    out = pd.DataFrame({
        "question": questions.astype(str),
        "label": np.asarray(classes, dtype=object)[post.argmax(1)],
        "confidence": agg.confidence,
        "difficulty": agg.difficulty if agg.difficulty is not None else np.nan,
    })
    for j, c in enumerate(classes):
        out[f"p_{c}"] = post[:, j]
    write_csv(args.out, out, float_format="%.6g")
    print(f"aggregated {len(out)} questions from {answers['worker'].nunique()} workers "
          f"into {args.out} in {seconds:.2f} s", file=sys.stderr)
    if truth is not None:
        gold_truth = truth.set_index("question")["truth"]
        pred = out.set_index("question")["label"]
        common = pred.index.intersection(gold_truth.index)
        if len(common) == 0:
            print("accuracy: no question of the truth file is in the answers", file=sys.stderr)
        else:
            acc = float((pred.loc[common] == gold_truth.loc[common]).mean())
            print(f"accuracy={acc:.4f} on {len(common)} questions with truth")
            if gold is not None:  # anchored questions score their own labels: show the others apart
                free = common.difference(pd.Index(gold["question"]))
                if len(free):
                    acc = float((pred.loc[free] == gold_truth.loc[free]).mean())
                    print(f"accuracy_not_in_gold={acc:.4f} on {len(free)} questions")
    return 0


def _run_wrench(args: argparse.Namespace) -> int:
    from .wrench import accuracy, load_wrench

    if args.truth:
        raise InputError("--truth is for --format csv; a WRENCH folder carries its own labels")
    try:
        data = load_wrench(args.answers)
    except AggregatorError as exc:
        raise InputError(str(exc)) from None
    fit = data.rows("train", "valid")  # (N,) the votes the model learns from; test is only predicted
    if not fit.any():
        raise InputError(f"{args.answers}: no train.json or valid.json to fit on")
    kw = {}
    if args.gold:
        if args.gold not in ("train", "valid"):
            raise InputError(f"--gold {args.gold!r}: with --format wrench name the split whose labels anchor "
                             "the fit, train or valid (test stays unseen)")
        anchor = data.rows(args.gold) & (data.labels >= 0)
        if not anchor.any():
            raise InputError(f"{args.answers}: --gold {args.gold}: {args.gold}.json is missing or has no labels")
        kw["gold"] = np.where(anchor, data.labels, -1)[fit]

    model = _model(args)
    started = time.perf_counter()
    try:
        model.fit(data.probs[fit], data.teacher_names, **kw)
        agg = model.predict(data.probs)
    except AggregatorError as exc:
        raise InputError(f"{args.answers}: {exc}") from None
    seconds = time.perf_counter() - started
    post = agg.posterior  # (N, K)
    out = pd.DataFrame({
        "split": data.split,
        "id": data.ids,
        "label": np.asarray(data.class_names, dtype=object)[post.argmax(1)],
        "confidence": agg.confidence,
        "difficulty": agg.difficulty if agg.difficulty is not None else np.nan,
    })
    for j, c in enumerate(data.class_names):
        out[f"p_{c}"] = post[:, j]
    write_csv(args.out, out, float_format="%.6g")
    print(f"aggregated {len(out)} examples ({int(fit.sum())} fitted: train+valid) from "
          f"{data.probs.shape[1]} rules into {args.out} in {seconds:.2f} s", file=sys.stderr)
    for split in dict.fromkeys(data.split):  # file order, each once
        rows = data.rows(split) & (data.labels >= 0)
        if rows.any():
            note = " (anchored by --gold: its labels were in the fit)" if split == args.gold else ""
            print(f"accuracy_{split}={accuracy(post[rows], data.labels[rows]):.4f} on {int(rows.sum())} "
                  f"examples{note}")
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
