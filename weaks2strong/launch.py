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


def rank_overrides(rank: int) -> list[str]:
    """What a rank > 0 changes in Hydra's config: no copy of the config (``.hydra/``) and its own
    job log, ``rank<r>.log`` (the file handler is named after the job), so that it neither writes
    rank 0's files nor interleaves its lines with rank 0's."""
    return ["hydra.output_subdir=null", f"hydra.job.name=rank{rank}"]


def quiet_other_ranks() -> None:
    """The Hydra + DDP pitfall, launcher side: under torchrun or srun every rank runs Hydra and would
    make its own timestamped run dir with a copy of the config. Ranks > 0 write no config and log to
    ``rank<r>.log``, in ``runs/.ranks/`` unless a run dir is given; rank 0's run dir is the run's
    (the pipeline broadcasts it). Hydra writes both before the job function runs, so this edits
    the command line before Hydra starts."""
    from weaks2strong import distributed

    if not distributed.launched() or distributed.rank() == 0:
        return
    sys.argv += rank_overrides(distributed.rank())
    if not any(a.startswith("hydra.run.dir=") for a in sys.argv):
        sys.argv.append("hydra.run.dir=${paths.runs_dir}/.ranks")


try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _submitit
except ImportError:  # without the `sweep` extra there are no submitit launchers to extend
    _submitit = None

if _submitit is not None:

    class _QuietRanks:
        """The same pitfall under submitit: each task of a job (one per device) unpickles the
        launcher and runs the job through Hydra's ``run_job``, never through ``w2s``'s command line,
        so ranks > 0 get their overrides here, in the task, before Hydra writes anything."""

        def __call__(self, sweep_overrides: list[str], *args, **kwargs):
            from weaks2strong import distributed

            if distributed.launched() and distributed.rank() > 0:
                sweep_overrides = [*sweep_overrides, *rank_overrides(distributed.rank())]
            return super().__call__(sweep_overrides, *args, **kwargs)

    class SlurmLauncher(_QuietRanks, _submitit.SlurmLauncher):
        """``hydra/launcher=slurm``: submitit's SLURM launcher; ranks > 0 write no config and log apart."""

    class LocalLauncher(_QuietRanks, _submitit.LocalLauncher):
        """``hydra/launcher=local``: submitit's local launcher; ranks > 0 write no config and log apart."""
