"""Reading rows from the offline mirror (or a user's file) into a standard DataFrame."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from weaks2strong.tasks.base import TaskError

MIRROR_HINT = (
    "set paths.data_mirror=<folder> (or the W2S_DATA_MIRROR environment variable) to the folder "
    "holding the offline dataset mirror, e.g. ../shared/datasets beside the checkout"
)


def read_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read CSV, TSV or JSON lines (by extension unless ``fmt`` says); one clear error if absent."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"dataset file not found: {path}; {MIRROR_HINT}")
    fmt = fmt or {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".gz": "jsonl"}.get(path.suffix, "csv")
    try:
        if fmt == "tsv":
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
        if fmt == "jsonl":
            return _read_jsonl(path)
        return pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise TaskError(f"{path}: cannot parse as {fmt}: {str(err).splitlines()[0]}") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    opener = __import__("gzip").open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return pd.DataFrame(rows)


def standardize(
    df: pd.DataFrame,
    where: str,
    text: str,
    label: str,
    classes: list[str],
    text_pair: str | None = None,
    id_prefix: str = "",
) -> pd.DataFrame:
    """Rename to (example_id, text[, text_pair], label) and map labels to class ids, checking each row."""
    for column in (text, label, text_pair):
        if column is not None and column not in df.columns:
            raise TaskError(f"{where}: no column '{column}' (columns are {', '.join(map(str, df.columns))})")
    out = pd.DataFrame({"example_id": [f"{id_prefix}{i}" for i in range(len(df))], "text": df[text].astype(str)})
    if text_pair is not None:
        out["text_pair"] = df[text_pair].astype(str)
    out["label"] = _label_ids(df[label], classes, where)
    empty = out["text"].str.strip() == ""
    if empty.any():
        raise TaskError(f"{where}: row {int(empty.to_numpy().argmax()) + 1} has an empty '{text}'")
    return out


def _label_ids(values: pd.Series, classes: list[str], where: str) -> list[int]:
    """Accept class ids (0..K-1), class names, or booleans for binary tasks."""
    lookup: dict[str, int] = {str(i): i for i in range(len(classes))}
    lookup.update({c.lower(): i for i, c in enumerate(classes)})
    if len(classes) == 2:
        lookup.update({"false": 0, "true": 1})
    ids = []
    for row, value in enumerate(values, 1):
        key = str(value).strip().lower()
        if key.endswith(".0"):
            key = key[:-2]
        if key not in lookup:
            raise TaskError(f"{where}: row {row} has label '{value}', not one of the classes {classes}")
        ids.append(lookup[key])
    return ids
