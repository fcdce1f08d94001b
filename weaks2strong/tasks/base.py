"""The Task record and the Burns et al. (2023) split rule.

A task holds four disjoint splits: ``weak_train`` (gold labels; the weak teachers learn from it),
``val`` (the one small labelled dev set a practitioner has: every choice is made on it),
``w2s_train`` (gold hidden from the student; used only to score the teachers' labels) and ``test``
(read once, by the evaluate stage, for the reported number). Every split is a DataFrame with
columns ``example_id``, ``text`` (and ``text_pair`` for reading tasks) and ``label`` (an int class
id).

The stages before evaluate get ``task.without_test()``: a copy that holds no test row at all (the
split is dropped, and asking for it names the seal), so no teacher, aggregator or student can read a
test row before the reported number is computed, through ``split`` or by reaching into ``splits``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from weaks2strong.runtime.errors import UserInputError

SPLITS = ("weak_train", "val", "w2s_train", "test")
# splits drawn from a shared pool in this order, so adding ``val`` left the other three unchanged
DRAW_ORDER = ("weak_train", "w2s_train", "test", "val")
# the splits that the stages before evaluate label and predict
DEV_SPLITS = ("w2s_train", "val")


class TaskError(UserInputError):
    """Bad task input; the message is one line naming the file, row, column or config key."""


class SealedSplits:
    """The split rule every task kind shares (``name``, ``splits`` and ``sealed`` are its fields)."""

    def split(self, name: str) -> pd.DataFrame:
        """The rows of a split; the one way to reach them, so a sealed test split stays sealed."""
        if name == "test" and self.sealed:
            raise TaskError("the test split is sealed until the evaluate stage: teachers, aggregators and "
                            "students make every choice on 'val'")
        if name not in self.splits:
            raise TaskError(f"task {self.name} has no split '{name}' (splits: {', '.join(self.splits)})")
        return self.splits[name]

    def without_test(self):
        """This task without its test rows, sealed: what every stage before evaluate receives. The
        copy holds no test row (not a flag on rows it still has), so no attribute can reach them."""
        return dataclasses.replace(self, splits={s: df for s, df in self.splits.items() if s != "test"}, sealed=True)

    def sizes(self) -> dict[str, int]:
        return {s: len(df) for s, df in self.splits.items()}


@dataclass
class Task(SealedSplits):
    name: str
    classes: list[str]
    splits: dict[str, pd.DataFrame]
    prompt: str = "{text}"  # rendered for a prompted LM; fields of the row fill the braces
    verbalizers: list[str] = field(default_factory=list)  # one answer word per class, for prompted LMs
    source: str = ""  # where the rows came from, for the report
    sealed: bool = False  # True before evaluate: the test split cannot be read

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def texts(self, split: str) -> list[str]:
        """One string per example, for teachers that read plain text (pairs joined by a newline)."""
        df = self.split(split)
        if "text_pair" in df:
            return (df["text"] + "\n" + df["text_pair"]).tolist()
        return df["text"].tolist()

    def encoder_inputs(self, split: str) -> tuple[list[str], list[str] | None]:
        """(texts, pairs) for an encoder's tokenizer: pairs is None on single-text tasks."""
        df = self.split(split)
        return df["text"].tolist(), (df["text_pair"].tolist() if "text_pair" in df else None)

    def choice_inputs(self, split: str) -> tuple[list[str], list[list[str]]]:
        """(firsts, options) for a multiple-choice encoder, on tasks whose rows carry ``question`` and
        ``option_0..option_{K-1}``: firsts[i] = context + " " + question (the question last, so a
        left truncation cuts the context, never the question); options[i] = the row's K option strings."""
        df = self.split(split)
        columns = [f"option_{k}" for k in range(self.num_classes)]
        missing = [c for c in ["question", *columns] if c not in df]
        if missing:
            raise TaskError(f"task {self.name} has no column '{missing[0]}' for a multiple-choice student "
                            f"(student=minilm_mc); use a classification student (student=minilm)")
        return (df["text"] + " " + df["question"]).tolist(), df[columns].to_numpy().tolist()

    def shard(self, index: int, count: int) -> Task:
        """Rows ``index::count`` of every split but weak_train (whole): one rank's labelling share."""
        splits = {s: df if s == "weak_train" else df.iloc[index::count].reset_index(drop=True)
                  for s, df in self.splits.items()}
        return dataclasses.replace(self, splits=splits)

    def labels(self, split: str) -> np.ndarray:
        return self.split(split)["label"].to_numpy(dtype=np.int64)

    def prompts(self, split: str) -> list[str]:
        df = self.split(split)
        fields = [c for c in df.columns if c not in ("example_id", "label")]
        return [self.prompt.format(**dict(zip(fields, row))) for row in df[fields].itertuples(index=False)]


def draw_splits(
    pools: dict[str, pd.DataFrame], sizes: dict[str, int], seed: int, where: str
) -> dict[str, pd.DataFrame]:
    """Draw the four splits, deterministic in ``seed``.

    ``pools`` maps a split name to the rows it may be drawn from; splits that share a pool (the
    usual case: weak_train and w2s_train both come from the source's train file) are drawn
    disjointly from one shuffle of it. ``val`` comes from w2s_train's pool unless ``pools`` names one.
    """
    pools = {"val": pools["w2s_train"], **pools}
    rng = np.random.default_rng(seed)
    order: dict[int, np.ndarray] = {}
    taken: dict[int, int] = {}
    out = {}
    for split in DRAW_ORDER:
        pool = pools[split]
        if split not in sizes:
            raise TaskError(f"task.sizes.{split} is missing (the splits are {', '.join(SPLITS)})")
        size = int(sizes[split])
        if size <= 0:
            raise TaskError(f"task.sizes.{split} must be positive, got {size}")
        key = id(pool)
        if key not in order:
            order[key] = rng.permutation(len(pool))
            taken[key] = 0
        start = taken[key]
        if start + size > len(pool):
            raise TaskError(
                f"task.sizes.{split}={size} is more than the {len(pool) - start} rows left in {where} "
                f"(pool of {len(pool)}); lower the split sizes"
            )
        out[split] = pool.iloc[order[key][start : start + size]].reset_index(drop=True)
        taken[key] = start + size
    return {split: out[split] for split in SPLITS}
