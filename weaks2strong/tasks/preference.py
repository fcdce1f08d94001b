"""Preference tasks: a prompt and two responses, and which one is better (``task=hh_harmless``).

A row is (example_id, prompt, first, second, label): label 0 when ``first`` is the better response,
1 when ``second`` is. The source lists each pair as (chosen, rejected); the loader shows them in a
seeded random order, so a judge that always answers "first" scores 0.5, and the classification
machinery (teachers' (N, 2) probabilities, the aggregators, the splits and their seal) applies
unchanged with the classes ``first`` and ``second``.

The splits keep the classification names: ``weak_train`` is the small gold part the judges are
trained or prompted on, ``w2s_train`` the unlabelled part the student is aligned on (its gold only
for the ceiling and for scoring the judges), ``val`` decides everything, ``test`` is read once.

HH-RLHF's rows are whole dialogues that share everything up to the final assistant turn. The
prompt is that shared prefix (``context: full``) or only its last human turn (``context:
last_turn``, the CPU default), always ending in "\\n\\nAssistant:"; each response is the final
assistant turn. ``max_chars`` cuts the prompt from the left and each response from the right, so
long dialogues stay short enough for CPU judges; students cut again by tokens (``align.max_*_tokens``).
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from weaks2strong.tasks.base import Task, TaskError, draw_splits
from weaks2strong.tasks.registry import resolve_mirror

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"
CLASSES = ["first", "second"]


@dataclass
class PreferenceTask(Task):
    kind: str = "preference"

    def responses(self, split: str) -> tuple[list[str], list[str], list[str]]:
        """(prompts, firsts, seconds) of a split: the raw fields, not the judge's rendered prompt."""
        df = self.split(split)
        return df["prompt"].tolist(), df["first"].tolist(), df["second"].tolist()

    def swapped(self, split: str) -> PreferenceTask:
        """This task with one split (and weak_train, for shots) in the other order: first <-> second."""
        def swap(df: pd.DataFrame) -> pd.DataFrame:
            return df.assign(first=df["second"], second=df["first"], label=1 - df["label"])

        return dataclasses.replace(self, splits={s: swap(self.split(s)) for s in dict.fromkeys(("weak_train", split))})


def split_dialogue(dialogue: str, where: str) -> tuple[str, str]:
    """(everything up to and including the last "\\n\\nAssistant:", the final assistant response)."""
    cut = dialogue.rfind(ASSISTANT)
    if cut < 0:
        raise TaskError(f"{where}: no '\\n\\nAssistant:' turn in the dialogue")
    return dialogue[: cut + len(ASSISTANT)], dialogue[cut + len(ASSISTANT):].strip()


def read_hh_pairs(path: Path, context: str = "last_turn", max_chars: int = 500) -> tuple[pd.DataFrame, int]:
    """HH-RLHF JSON lines -> (rows with prompt, chosen, rejected; the number of rows dropped because
    their two responses are identical or one is empty, or their dialogues differ before the final
    assistant turn: pairs that compare nothing)."""
    if context not in ("last_turn", "full"):
        raise TaskError(f"task.context='{context}' is not one of last_turn, full")
    if not path.exists():
        raise TaskError(f"dataset file not found: {path}")
    rows, dropped = [], 0
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            where = f"{path} row {i}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskError(f"{where}: not JSON ({e.msg})") from None
            if not isinstance(record, dict) or not {"chosen", "rejected"} <= record.keys():
                raise TaskError(f"{where}: needs the keys 'chosen' and 'rejected'")
            prompt, chosen = split_dialogue(record["chosen"], where)
            other, rejected = split_dialogue(record["rejected"], where)
            # 5 of HH-harmless's 2,312 rows splice two dialogues (a turn merged into the text): dropped
            if other != prompt or not chosen or not rejected or chosen == rejected:
                dropped += 1
                continue
            if context == "last_turn":
                prompt = prompt[prompt.rfind(HUMAN):].lstrip("\n") if HUMAN in prompt else prompt.lstrip("\n")
            rows.append({"example_id": f"hh-{i}", "prompt": _left_cut(prompt, max_chars),
                         "chosen": chosen[:max_chars], "rejected": rejected[:max_chars]})
    return pd.DataFrame(rows), dropped


def _left_cut(prompt: str, max_chars: int) -> str:
    return prompt if len(prompt) <= max_chars else "…" + prompt[-max_chars:]


def load_preference_task(name: str, sizes: dict[str, int], mirror: str | None = None, split_seed: int = 0,
                         prompt: str = "{prompt}\n\nA: {first}\n\nB: {second}", verbalizers: list[str] | None = None,
                         context: str = "last_turn", max_chars: int = 500) -> PreferenceTask:
    """Read the pairs, draw the four splits from them, show each pair in a seeded random order."""
    if name != "hh_harmless":
        raise TaskError(f"unknown preference task '{name}' (task.name); known: hh_harmless")
    root = resolve_mirror(mirror)
    pairs, dropped = read_hh_pairs(root / "hh_harmless" / "test.jsonl.gz", context, max_chars)
    splits = draw_splits({"weak_train": pairs, "w2s_train": pairs, "test": pairs}, sizes, split_seed,
                         f"{root}/hh_harmless ({dropped} pairs with nothing to prefer dropped)")
    rng = np.random.default_rng([split_seed, 1])  # the order, apart from the draw of the splits
    for split, df in splits.items():
        second_is_chosen = rng.random(len(df)) < 0.5
        first = np.where(second_is_chosen, df["rejected"], df["chosen"])
        second = np.where(second_is_chosen, df["chosen"], df["rejected"])
        splits[split] = pd.DataFrame({
            "example_id": df["example_id"], "prompt": df["prompt"], "first": first, "second": second,
            # plain text for teachers that read one string (a classifier over the pair)
            "text": df["prompt"] + "\n\nA: " + first + "\n\nB: " + second,
            "label": second_is_chosen.astype(np.int64)})
    return PreferenceTask(name=name, classes=list(CLASSES), splits=splits, prompt=prompt,
                          verbalizers=list(verbalizers or ["A", "B"]), source=f"{root}/hh_harmless")
