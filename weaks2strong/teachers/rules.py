"""Labelling functions that came with the data: WRENCH's rule votes, one rule per teacher.

A WRENCH task (``task=wrench_*``, or ``load_task("youtube")``) keeps each row's rule votes in a
``weak_labels`` column (a JSON list, -1 = the rule abstained); ``WrenchRule(index)`` reads rule
``index`` of it as a one-hot answer, or an abstention. The votes were computed once by the data set's
authors, so a rule learns nothing and its answer for an example is the same in every split.
"""
from __future__ import annotations

import json

import numpy as np

from weaks2strong.tasks import Task
from weaks2strong.teachers.base import TeacherError


class WrenchRule:
    split_independent = True

    def __init__(self, index: int):
        self.index = int(index)
        self.name = f"rule_{self.index}"

    def fit(self, task: Task) -> None:
        """Nothing to learn; checks that the task carries rule votes and that this rule is one of them."""
        self._votes(task, "weak_train")

    def _votes(self, task: Task, split: str) -> np.ndarray:
        rows = task.split(split)
        if "weak_labels" not in rows:
            raise TeacherError(f"teacher '{self.name}': task '{task.name}' has no 'weak_labels' column (a WRENCH "
                               f"task carries its rules' votes there)")
        votes = np.array([json.loads(v) for v in rows["weak_labels"]], dtype=np.int64).reshape(len(rows), -1)
        if not 0 <= self.index < votes.shape[1]:
            raise TeacherError(f"teacher '{self.name}': task '{task.name}' has {votes.shape[1]} rules "
                               f"(index 0..{votes.shape[1] - 1})")
        return votes[:, self.index]

    def predict_proba(self, task: Task, split: str) -> np.ndarray:
        vote = self._votes(task, split)  # (N,)
        probs = np.full((len(vote), task.num_classes), np.nan)
        fired = vote >= 0
        probs[fired] = np.eye(task.num_classes)[vote[fired]]
        return probs
