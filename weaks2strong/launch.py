"""The Hydra + DDP pitfalls: where the extra ranks of a run write, and what they rerun."""
from __future__ import annotations

import sys


def pin_lightning_children_to_this_job() -> None:
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


def quiet_other_ranks() -> None:
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
