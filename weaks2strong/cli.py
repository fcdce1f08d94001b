"""``w2s``: the Hydra entry point. ``w2s`` runs the default experiment; any key is an override."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
log = logging.getLogger("weaks2strong")


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("w2s.root"):
        # the checkout holding conf/, so data/ and runs/ land beside it wherever w2s is called from
        OmegaConf.register_new_resolver("w2s.root", lambda: str(Path(CONFIG_DIR).parent))


def headline(metrics: dict, name: str | None) -> float | None:
    """The number a sweeper optimises: a dotted path into metrics.json (e.g. ``pgr.vs_best_teacher``)."""
    if not name:
        return None
    value = metrics
    for part in name.split("."):
        value = value[part]
    return float(value)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from weaks2strong import pipeline
    from weaks2strong.errors import UserInputError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        metrics = pipeline.run(cfg)
    except UserInputError as err:
        print(f"w2s: error: {err}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on to the next one
        sys.exit(2)
    return headline(metrics, cfg.get("optimized_metric"))


_register_resolvers()

if __name__ == "__main__":
    main()
