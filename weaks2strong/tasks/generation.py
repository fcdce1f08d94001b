"""Generation tasks: a question in, a short free-text answer out (SciQ, closed book).

A ``GenerationTask`` has the same four splits and the same sealing rule as a classification
``Task``; its rows are ``example_id``, ``question``, ``answer`` (the gold string). What counts as a
correct answer lives here too: ``normalize_answer`` (SQuAD's rule: lowercase, no punctuation, no
articles, single spaces), exact match and token F1 on normalised strings.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from weaks2strong.tasks.base import SealedSplits, TaskError, draw_splits

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation (Rajpurkar et al. 2016): lowercase, drop punctuation and articles, squeeze spaces."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised strings (SQuAD's F1); two empty strings agree."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass
class GenerationTask(SealedSplits):
    name: str
    splits: dict[str, pd.DataFrame]
    prompt: str = "Question: {question}\nAnswer:"  # rendered per row; the answer follows after one space
    source: str = ""
    sealed: bool = False
    kind: str = "generation"

    def questions(self, split: str) -> list[str]:
        return self.split(split)["question"].tolist()

    def answers(self, split: str) -> list[str]:
        return self.split(split)["answer"].tolist()

    def prompts(self, split: str) -> list[str]:
        return [self.prompt.format(question=q) for q in self.questions(split)]


def read_qa_blocks(path: Path) -> pd.DataFrame:
    """SciQ as LitCab ships it: blocks of "question\\nanswer" separated by a blank line."""
    if not path.is_file():
        raise TaskError(f"dataset file not found: {path}; set paths.data_mirror=<folder> to the offline "
                        f"dataset mirror (e.g. ../shared/datasets)")
    blocks = [b for b in re.split(r"\n\s*\n", path.read_text(encoding="utf-8").strip()) if b.strip()]
    rows = []
    for number, block in enumerate(blocks, 1):
        lines = block.strip("\n").split("\n")
        if len(lines) != 2 or not lines[0].strip():
            raise TaskError(f"{path}: block {number} is not 'question\\nanswer' (it has {len(lines)} line(s))")
        if not normalize_answer(lines[1]):
            raise TaskError(f"{path}: block {number} has an empty gold answer ({lines[1]!r})")
        rows.append((lines[0].strip(), lines[1].strip()))
    return pd.DataFrame(rows, columns=["question", "answer"])


def _sciq(mirror: Path) -> dict[str, pd.DataFrame]:
    """weak_train, val and w2s_train from SciQ's train file; test from its test file."""
    def rows(name: str) -> pd.DataFrame:
        df = read_qa_blocks(mirror / "sciq" / f"{name}.txt")
        return df.assign(example_id=[f"{name}-{i}" for i in range(len(df))])[["example_id", "question", "answer"]]

    train = rows("train")
    return {"weak_train": train, "w2s_train": train, "test": rows("test")}


def _imdb_continue(mirror: Path, opening_words: int = 8, continuation_words: int = 20) -> dict[str, pd.DataFrame]:
    """IMDB reviews cut into an opening (the "question": the first words) and its continuation (the
    "answer": the next words), with the review's gold sentiment as ``label``; weak_train, val and
    w2s_train from the train file, test from the test file. The strong model continues an opening;
    the guide is tuned on continuations of one sentiment (weaks2strong/pipeline/search/guide.py)."""
    from weaks2strong.tasks.readers import read_table, standardize

    def rows(name: str) -> pd.DataFrame:
        where = f"{mirror}/imdb_small/{name}.csv"
        df = standardize(read_table(mirror / "imdb_small" / f"{name}.csv"), where, "text", "label",
                         ["negative", "positive"], id_prefix=f"{name}-")
        words = df["text"].str.replace(r"<br\s*/?>", " ", regex=True).str.split()
        long_enough = words.str.len() > opening_words + 1
        return pd.DataFrame({"example_id": df["example_id"][long_enough],
                             "question": words[long_enough].str[:opening_words].str.join(" "),
                             "answer": words[long_enough].str[opening_words:opening_words + continuation_words]
                             .str.join(" "),
                             "label": df["label"][long_enough]}).reset_index(drop=True)

    train = rows("train")
    return {"weak_train": train, "w2s_train": train, "test": rows("test")}


GENERATION_TASKS = {"sciq_gen": _sciq, "imdb_continue": _imdb_continue}
SOURCE_FOLDERS = {"sciq_gen": "sciq", "imdb_continue": "imdb_small"}


def load_generation_task(name: str, sizes: dict[str, int], mirror: str | None = None, split_seed: int = 0,
                         prompt: str = "Question: {question}\nAnswer:") -> GenerationTask:
    from weaks2strong.tasks.registry import resolve_mirror

    if name not in GENERATION_TASKS:
        raise TaskError(f"unknown generation task '{name}' (task.name); known: {', '.join(GENERATION_TASKS)}")
    if "{question}" not in prompt:
        raise TaskError(f"task.prompt must contain {{question}}, got {prompt!r}")
    root = resolve_mirror(mirror)
    splits = draw_splits(GENERATION_TASKS[name](root), sizes, split_seed, f"{root}/{name}")
    return GenerationTask(name=name, splits=splits, prompt=prompt, source=f"{root}/{SOURCE_FOLDERS[name]}")
