"""The preference run (``w2s experiment=hh_harmless``): weak judges → pairwise posterior → DPO students.

teach: each judge (``teachers/judges.py``) learns from weak_train's gold pairs and says (N, 2)
[P(first better), P(second better)] on w2s_train and val. aggregate: the Bayesian aggregator
(``aggregator``), majority vote and the single judge best on val (``preference.majority``,
``preference.single``) read those like any two-class labels. align: the strong student (the
pretrained ``student.lm``, LoRA by default) is DPO'd on w2s_train's pairs five ways:

| student | pairs: chosen / p / w |
|---|---|
| gold | the gold order / 1 / 1 (the ceiling) |
| best_judge | the val-best judge's vote / 1 / 1 |
| majority | the majority vote / 1 / 1 |
| bayes | the posterior's argmax / 1 / 1 |
| bayes_weighted | the posterior's argmax / its probability (cDPO) / the aggregator's confidence weight |

A source that says nothing on a pair (an exact tie, an abstention) drops it. The reference
log-probs are the pretrained student's, computed once per split (``pref_reference``) and shared by
the five. evaluate unseals test: each judge's and each aggregate's accuracy, and each student's
accuracy as a judge by its implicit reward (margin > 0: first better; a tie counts half). PGR
against the best judge and against the Bayesian aggregate, with the gold-DPO'd student as ceiling.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from weaks2strong.pipeline.classification.teach import teach
from weaks2strong.pipeline.preference.aggregate import aggregate_judges
from weaks2strong.pipeline.preference.align import align_student, reference_logprobs, training_pairs
from weaks2strong.pipeline.preference.evaluate import evaluate
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Store
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks.preference import PreferenceTask


def run(cfg: DictConfig, task: PreferenceTask, store: Store, run_dir: Path) -> dict:
    """teach and aggregate are the classification path's (a judge's (N, 2) answer is two-class labels)."""
    if not distributed.is_main() or distributed.world_size() > 1:
        raise UserInputError("the preference path runs in one process for now (trainer.devices=1)")
    if cfg.get("align", {}).get("method", "none") == "none":
        raise UserInputError(f"task {task.name} is a preference task: its students are DPO'd (align=dpo, "
                             f"e.g. experiment=hh_harmless)")
    dev = task.without_test()
    labels = teach(dev, cfg.teachers, store)
    aggregates = aggregate_judges(dev, labels, cfg, store)
    reference = reference_logprobs(dev, ("w2s_train", "val"), cfg, store)
    students = {}
    for name, (pairs, source) in training_pairs(dev, aggregates, reference).items():
        students[name] = align_student(dev, name, pairs, source, reference, cfg, store, run_dir)
    return evaluate(task, dev, cfg, store, run_dir, labels, aggregates, students)
