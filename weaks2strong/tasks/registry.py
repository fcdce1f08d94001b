"""The task registry: a name maps to a loader that reads the mirror and returns split pools."""
from __future__ import annotations

import os
import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from weaks2strong.tasks.base import SPLITS, Task, TaskError, draw_splits
from weaks2strong.tasks.readers import MIRROR_HINT, check_header, read_table, standardize

SENTIMENT = ["negative", "positive"]


def _sst2(mirror: Path) -> dict[str, pd.DataFrame]:
    train = read_table(mirror / "sst2" / "train.tsv", "tsv")
    dev = read_table(mirror / "sst2" / "dev.tsv", "tsv")  # the labelled dev set is the test set
    train = standardize(train, f"{mirror}/sst2/train.tsv", "sentence", "label", SENTIMENT, id_prefix="train-")
    dev = standardize(dev, f"{mirror}/sst2/dev.tsv", "content", "label", SENTIMENT, id_prefix="dev-")
    return {"weak_train": train, "w2s_train": train, "test": dev}


def _review_subset(folder: str, text: str) -> Callable[[Path], dict[str, pd.DataFrame]]:
    def load(mirror: Path) -> dict[str, pd.DataFrame]:
        train = standardize(read_table(mirror / folder / "train.csv"), f"{mirror}/{folder}/train.csv", text,
                            "label", SENTIMENT, id_prefix="train-")
        test = standardize(read_table(mirror / folder / "test.csv"), f"{mirror}/{folder}/test.csv", text,
                           "label", SENTIMENT, id_prefix="test-")
        return {"weak_train": train, "w2s_train": train, "test": test}

    return load


def _boolq(mirror: Path) -> dict[str, pd.DataFrame]:
    """BoolQ dev (the only labelled split mirrored): question + passage -> no/yes, all splits from it."""
    where = f"{mirror}/boolq/dev.jsonl"
    rows = standardize(read_table(mirror / "boolq" / "dev.jsonl"), where, "question", "answer", ["no", "yes"],
                       text_pair="passage", id_prefix="dev-")
    return {"weak_train": rows, "w2s_train": rows, "test": rows}


def _cosmosqa(mirror: Path) -> dict[str, pd.DataFrame]:
    """CosmosQA dev: context -> one of 4 answers. For teachers and prompts the question and the options
    ride in ``text_pair`` as lettered lines; ``question`` and ``option_0..3`` hold them apart."""
    where = f"{mirror}/cosmosqa/valid.csv"
    raw = read_table(mirror / "cosmosqa" / "valid.csv")
    missing = [c for c in ("question", "answer0", "answer1", "answer2", "answer3") if c not in raw.columns]
    if missing:
        raise TaskError(f"{where}: no column '{missing[0]}'")
    raw["options"] = raw["question"].astype(str)
    for i, letter in enumerate("ABCD"):
        raw["options"] = raw["options"] + f"\n{letter}) " + raw[f"answer{i}"].astype(str)
    rows = standardize(raw, where, "context", "label", ["A", "B", "C", "D"], text_pair="options", id_prefix="dev-")
    # the multiple-choice student reads each option apart (``Task.choice_inputs``)
    rows["question"] = raw["question"].astype(str).to_numpy()
    for i in range(4):
        rows[f"option_{i}"] = raw[f"answer{i}"].astype(str).to_numpy()
    return {"weak_train": rows, "w2s_train": rows, "test": rows}


AG_NEWS = ["world", "sports", "business", "sci_tech"]


def _ag_news(mirror: Path) -> dict[str, pd.DataFrame]:
    """AG News (the original 7,600-row test file): title + ". " + description -> one of 4 topics.

    Labels 1-4 (World, Sports, Business, Sci/Tech) become class ids 0-3; the crawl's escapes are
    undone (``#39;`` -> ', ``&lt;`` -> <, a stray backslash for a line break -> a space).
    """
    import html
    import re

    where = f"{mirror}/ag_news/test.csv"
    raw = read_table(mirror / "ag_news" / "test.csv")
    for column in ("label", "title", "description"):
        if column not in raw.columns:
            raise TaskError(f"{where}: no column '{column}'")

    def clean(text: pd.Series) -> pd.Series:
        text = text.astype(str).str.replace(r"(?<!&)#(\d+);", r"&#\1;", regex=True).map(html.unescape)
        return text.str.replace("\\", " ", regex=False).map(lambda t: re.sub(r"\s+", " ", t).strip())

    raw["text"] = clean(raw["title"]) + ". " + clean(raw["description"])
    # 1-4 -> the class names; any other value is left as it is, for standardize to name its row
    raw["label"] = raw["label"].astype(str).str.strip().replace({str(i + 1): c for i, c in enumerate(AG_NEWS)})
    rows = standardize(raw, where, "text", "label", AG_NEWS, id_prefix="test-")
    return {"weak_train": rows, "w2s_train": rows, "test": rows}


# WRENCH's labelling-function sets (../shared/datasets/weak_supervision): the rules' votes ride along in
# ``weak_labels`` (teachers.rules.WrenchRule reads them), the text feeds the student (WRENCH's end model)
WRENCH_SETS = ("youtube", "sms", "trec", "hausa")


def wrench_classes(mirror: Path, name: str) -> list[str]:
    from weaks2strong.aggregate.io.wrench import load_wrench

    return list(load_wrench(mirror / "weak_supervision" / name, split="test").class_names)


def _wrench(name: str) -> Callable[[Path], dict[str, pd.DataFrame]]:
    def load(mirror: Path) -> dict[str, pd.DataFrame]:
        import json

        from weaks2strong.aggregate.io.wrench import load_wrench

        folder = mirror / "weak_supervision" / name
        if not folder.is_dir():
            raise TaskError(f"WRENCH folder not found: {folder}; {MIRROR_HINT}")
        data = load_wrench(folder)
        votes = data.votes  # (N, T), -1 = abstain
        rows = pd.DataFrame({"example_id": [f"{s}-{i}" for s, i in zip(data.split, data.ids)],
                             "text": [str(t) for t in data.texts],
                             "weak_labels": [json.dumps(v.tolist()) for v in votes], "label": data.labels})
        rows = rows[(data.labels >= 0) & (rows["text"].str.strip() != "")]  # the student needs gold and text
        split = data.split[rows.index]
        train = rows[np.isin(split, ("train", "valid"))].reset_index(drop=True)
        test = rows[split == "test"].reset_index(drop=True)
        return {"weak_train": train, "w2s_train": train, "test": test}

    return load


TASKS: dict[str, Callable[[Path], dict[str, pd.DataFrame]]] = {
    **{name: _wrench(name) for name in WRENCH_SETS},
    "boolq": _boolq,
    "cosmosqa": _cosmosqa,
    "sst2": _sst2,
    "imdb_small": _review_subset("imdb_small", "text"),
    "amazon_small": _review_subset("amazon_small", "content"),
    "ag_news": _ag_news,
}


def resolve_mirror(mirror: str | os.PathLike | None) -> Path:
    return Path(mirror or os.environ.get("W2S_DATA_MIRROR") or "../shared/datasets").expanduser()


def load_task(
    name: str,
    sizes: dict[str, int],
    classes: list[str] | None = None,
    mirror: str | None = None,
    split_seed: int = 0,
    prompt: str = "{text}",
    verbalizers: list[str] | None = None,
    # `task=csv`: the user's own file
    path: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    split_column: str | None = None,
    # cheap seeds: cut each source pool to this many rows once (drawn with pool_seed, not split_seed), so
    # split seeds reshuffle one fixed pool and the per-example caches see the same examples again
    pool_size: int | None = None,
    pool_seed: int = 0,
) -> Task:
    """Build a Task: read the rows, draw the splits (deterministic in ``split_seed``)."""
    if name == "csv":
        if not path:
            raise TaskError("task=csv needs task.path=<file> (CSV, TSV or JSON lines)")
        pools = _user_file(Path(path), classes, text_column, label_column, text_pair_column, split_column)
        where = path
    elif name in TASKS:
        root = resolve_mirror(mirror)
        pools = TASKS[name](root)
        where = f"{root}/{name}"
    else:
        raise TaskError(f"unknown task '{name}' (task.name); known: {', '.join(sorted(TASKS))}, csv")
    if name in WRENCH_SETS and not classes:
        classes = wrench_classes(root, name)
    classes = list(classes or SENTIMENT)
    for key, values in (("classes", classes), ("verbalizers", verbalizers or [])):
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise TaskError(f"task.{key}[{i}] is {value!r} ({type(value).__name__}), not a string; "
                                f"quote it in YAML (a bare no/yes/on/off reads as a boolean)")
    if verbalizers is not None and len(verbalizers) != len(classes):
        raise TaskError(f"task.verbalizers has {len(verbalizers)} entries for {len(classes)} classes")
    if pool_size is not None:
        pools = cut_pools(pools, int(pool_size), pool_seed)
    splits = draw_splits(pools, sizes, split_seed, where)
    columns = [c for c in splits["test"].columns if c not in ("example_id", "label")]
    for field in (f for _, f, _, _ in string.Formatter().parse(prompt) if f):
        if field not in columns:
            raise TaskError(f"task.prompt uses {{{field}}}, but the rows of {where} have no '{field}' "
                            f"(fields: {', '.join(columns)})")
    return Task(name=name, classes=classes, splits=splits, prompt=prompt,
                verbalizers=list(verbalizers or classes), source=where)


def cut_pools(pools: dict[str, pd.DataFrame], pool_size: int, seed: int) -> dict[str, pd.DataFrame]:
    """Each distinct pool cut to ``pool_size`` rows drawn with ``seed`` (splits that shared a pool still do)."""
    if pool_size <= 0:
        raise TaskError(f"task.pool_size must be positive, got {pool_size}")
    cut: dict[int, pd.DataFrame] = {}
    for pool in pools.values():
        if id(pool) not in cut:
            keep = np.random.default_rng(seed).permutation(len(pool))[:pool_size]
            cut[id(pool)] = pool.iloc[np.sort(keep)].reset_index(drop=True) if len(pool) > pool_size else pool
    return {split: cut[id(pool)] for split, pool in pools.items()}


def _user_file(path: Path, classes, text_column, label_column, text_pair_column, split_column):
    if not classes:
        raise TaskError("task=csv needs task.classes=[...] (class names, in label-id order)")
    check_header(path, {"task.text_column": text_column, "task.label_column": label_column,
                        "task.text_pair_column": text_pair_column, "task.split_column": split_column})
    df = read_table(path)
    if split_column is None:
        rows = standardize(df, str(path), text_column, label_column, classes, text_pair_column, "row-")
        return {"weak_train": rows, "w2s_train": rows, "test": rows}
    if split_column not in df.columns:
        raise TaskError(f"{path}: no column '{split_column}' (task.split_column)")
    pools = {}
    for split in SPLITS:
        part = df[df[split_column] == split].reset_index(drop=True)
        if part.empty:
            raise TaskError(f"{path}: no rows with {split_column}={split}")
        pools[split] = standardize(part, f"{path} [{split}]", text_column, label_column, classes,
                                   text_pair_column, f"{split}-")
    return pools
