"""The preference path's aggregate stage: the judges' (N, 2) votes aggregated three ways, each by the
classification path's aggregate stage: the Bayesian aggregator (``aggregator``), majority vote and
the single judge best on val (``preference.majority``, ``preference.single``)."""
from __future__ import annotations

from omegaconf import DictConfig

from weaks2strong.pipeline.classification.aggregate import aggregate_labels
from weaks2strong.runtime.artifacts import Artifact, Store
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks.preference import PreferenceTask


def aggregator_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    if cfg.get("preference") is None:
        raise UserInputError("preference: no majority/single aggregator configs for the baselines' students; "
                             "run a preference task through its experiment (experiment=hh_harmless)")
    return {"bayes": cfg.aggregator, "majority": cfg.preference.majority, "single": cfg.preference.single}


def aggregate_judges(task: PreferenceTask, labels: dict[str, Artifact], cfg: DictConfig,
                     store: Store) -> dict[str, Artifact]:
    return {name: aggregate_labels(task, labels, agg_cfg, store) for name, agg_cfg in aggregator_configs(cfg).items()}
