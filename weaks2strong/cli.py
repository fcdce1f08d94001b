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


def headline(metrics: dict | None, name: str | None) -> float | None:
    """The number a sweeper optimises: a dotted path into metrics.json (e.g. ``pgr.vs_best_teacher``)."""
    if not name or metrics is None:
        return None
    value = metrics
    for part in name.split("."):
        value = value[part]
    return float(value)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from weaks2strong import distributed, pipeline
    from weaks2strong.errors import UserInputError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if multirun:
        _pin_lightning_children_to_this_job()
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


def _pin_lightning_children_to_this_job() -> None:
    """The Hydra + DDP pitfall, multirun side. Lightning starts DDP ranks 1..N-1 by rerunning
    ``sys.argv`` with ``hydra.run.dir`` set to the run dir; in a multirun that argv is the whole
    sweep (``-m``) and the run dir is not this job's folder, so each child would start the sweep
    again elsewhere. Make the argv this one job's overrides and the run dir this job's folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    hydra_cfg = HydraConfig.get()
    flags = [a for a in sys.argv[1:] if a.startswith("-") and "=" in a or a.startswith("--config")]
    sys.argv = [sys.argv[0], *flags, *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def _quiet_other_ranks() -> None:
    """The Hydra + DDP pitfall, launcher side: under torchrun or srun every rank runs Hydra and would
    make its own timestamped run dir with a copy of the config. Ranks > 0 write no config and log to
    ``rank<r>.log``, in ``runs/.ranks/`` unless a run dir is given; rank 0's run dir is the run's
    (the pipeline broadcasts it)."""
    from weaks2strong import distributed

    if not distributed.launched() or distributed.rank() == 0:
        return
    r = distributed.rank()
    sys.argv += ["hydra.output_subdir=null", f"hydra.job.name=rank{r}"]
    if not any(a.startswith("hydra.run.dir=") for a in sys.argv):
        sys.argv.append("hydra.run.dir=${paths.runs_dir}/.ranks")


def entry() -> None:
    """The ``w2s`` console script."""
    _quiet_other_ranks()
    main()


_register_resolvers()

if __name__ == "__main__":
    entry()
