"""``w2s``: the Hydra entry point. ``w2s`` runs the default experiment; any key is an override."""
from __future__ import annotations

import logging
import math
import os
import sys

import hydra
from omegaconf import DictConfig

from weaks2strong.runtime.checks import check_command_line, find_secret
from weaks2strong.runtime.launch import pin_lightning_children_to_this_job, quiet_other_ranks
from weaks2strong.runtime.resolvers import CONFIG_DIR, register_resolvers

log = logging.getLogger("weaks2strong")


def headline(metrics: dict | None, name: str | None) -> float | None:
    """The number a sweeper optimises: a dotted path into metrics.json (e.g. ``pgr.vs_best_teacher``)."""
    if not name or metrics is None:
        return None
    value = metrics
    for part in name.split("."):
        value = value[part]
    if value is None or math.isnan(float(value)):  # e.g. PGR where the ceiling does not clear the weak
        log.warning("optimized_metric=%s is undefined (NaN) for this run; a sweeper counts it as a failed trial",
                    name)
        return None
    return float(value)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from weaks2strong import pipeline
    from weaks2strong.runtime import distributed
    from weaks2strong.runtime.errors import UserInputError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    secret = find_secret(cfg)
    if secret:
        print(f"w2s: error: config key '{secret}' looks like a secret; pass it through the environment "
              f"(e.g. WANDB_API_KEY) instead. The copy of the config in the run dir was redacted.", file=sys.stderr)
        sys.exit(2)
    if multirun:
        pin_lightning_children_to_this_job()
    try:
        metrics = pipeline.run(cfg)
    except UserInputError as err:
        if distributed.is_main():
            print(f"w2s: error: {err}", file=sys.stderr)
        if multirun:
            raise  # the sweep records this job as failed and goes on to the next one
        sys.exit(2)
    finally:
        if multirun:
            distributed.release_lightning_ranks()
    return headline(metrics, cfg.get("optimized_metric"))


def entry() -> None:
    """The ``w2s`` console script."""
    # the pre-check composes conf/config.yaml; with another primary config or a help flag, Hydra alone decides
    other = ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help", "-cn", "-cp", "-cd")
    if not any(a in other or a.startswith(("--config", "-cn=", "-cp=", "-cd=")) for a in sys.argv[1:]):
        problem = check_command_line(sys.argv[1:])
        if problem:
            print(f"w2s: error: {problem}", file=sys.stderr)
            sys.exit(2)
    quiet_other_ranks()
    main()
    from weaks2strong.runtime.sweep import SweepSummary

    if SweepSummary.failed:  # Hydra's basic sweeper raises at a failed job; a sweeper that goes on does not
        print(f"w2s: error: {len(SweepSummary.failed)} job(s) of the sweep failed: "
              f"{'; '.join(SweepSummary.failed)}", file=sys.stderr)
        sys.exit(1)


register_resolvers()

if __name__ == "__main__":
    entry()
