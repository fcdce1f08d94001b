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


def table_format(path: Path) -> str:
    return {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".gz": "jsonl"}.get(path.suffix, "csv")


def read_table(path: str | Path, fmt: str | None = None) -> pd.DataFrame:
    """Read CSV, TSV or JSON lines (by extension unless ``fmt`` says); one clear error if absent."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"dataset file not found: {path}; {MIRROR_HINT}")
    fmt = fmt or table_format(path)
    try:
        if fmt == "tsv":
            return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
        if fmt == "jsonl":
            return _read_jsonl(path)
        return pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise TaskError(f"{path}: cannot parse as {fmt}: {str(err).splitlines()[0]}") from None


def check_header(path: str | Path, columns: dict[str, str | None], key: str = "task.path") -> None:
    """A user's file, checked in well under a second whatever its size: it exists, can be read, and its
    header (a JSON-lines file: its first row) names every column in ``columns`` (config key -> column;
    None: not asked for). Raises a one-line ``TaskError`` naming the file and the key."""
    path = Path(path)
    if not path.exists():
        raise TaskError(f"{key}={path}: no such file")
    if not path.is_file():
        raise TaskError(f"{key}={path} is not a file")
    fmt = table_format(path)
    try:
        if fmt == "jsonl":
            found = _first_json_row(path)
        else:
            tsv = {"sep": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
            found = list(pd.read_csv(path, nrows=0, **tsv).columns)
    except OSError as err:
        raise TaskError(f"{key}={path}: cannot read it ({err.strerror or err})") from None
    except pd.errors.EmptyDataError:
        raise TaskError(f"{path}: empty file, no header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise TaskError(f"{path}: cannot parse as {fmt}: {str(err).splitlines()[0]}") from None
    for option, column in columns.items():
        if column is not None and column not in found:
            raise TaskError(f"{path}: no column '{column}' ({option}; columns are {', '.join(map(str, found))})")


def _first_json_row(path: Path) -> list[str]:
    """The field names of a JSON-lines file's first row."""
    opener = __import__("gzip").open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lineno, line = next(((n, line) for n, line in enumerate(fh, 1) if line.strip()), (0, None))
    if line is None:
        raise pd.errors.EmptyDataError
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise TaskError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise TaskError(f"{path}:{lineno}: not a JSON object (a row of named fields)")
    return list(row)


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
