"""The Hydra + DDP pitfalls: where the extra ranks of a run write, and what they rerun."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


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


# Hydra writes the copy of the config (``.hydra/``) and opens the job log before the job function
# runs, on every process that runs the job. Each process resolves these overrides itself, so ranks
# > 0 write no copy of the config and log to ``rank<r>.log``, under whatever started them: torchrun
# and srun run ``w2s`` on every rank, but submitit's tasks (``hydra/launcher=slurm|submitit_local``)
# compose the job from the overrides of the ``w2s -m`` that submitted it, never from a command line.
RANK_OVERRIDES = {
    "hydra.output_subdir": "${w2s.if_rank_zero:.hydra}",
    "hydra.job.name": "${w2s.rank_job_name:}",  # the job log is <job name>.log
}


def if_rank_zero(value: Any) -> Any:
    """``${w2s.if_rank_zero:x}``: x on rank 0 (or in a single process), None on the other ranks."""
    from weaks2strong.runtime import distributed

    return value if distributed.rank() == 0 else None


def rank_job_name() -> str:
    """``${w2s.rank_job_name:}``: Hydra's name for the job on rank 0 (``cli``), ``rank<r>`` elsewhere."""
    from hydra.core.utils import JobRuntime

    from weaks2strong.runtime import distributed

    return JobRuntime.instance().get("name") if distributed.rank() == 0 else f"rank{distributed.rank()}"


def register_rank_resolvers() -> None:
    for name, resolver in (("w2s.if_rank_zero", if_rank_zero), ("w2s.rank_job_name", rank_job_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def quiet_other_ranks() -> None:
    """The Hydra + DDP pitfall, launcher side: with several processes each runs Hydra, and would
    write a copy of the config and the job log into the same run dir, or make its own timestamped
    run dir. Adds ``RANK_OVERRIDES`` to the command line (unless it sets those keys already, as
    Lightning's relaunch does), and for ranks > 0 of a torchrun or srun run without a run dir,
    ``runs/.ranks/`` (rank 0's run dir is the run's; the pipeline broadcasts it)."""
    from weaks2strong.runtime import distributed

    given = {a.lstrip("+").split("=", 1)[0] for a in sys.argv[1:] if "=" in a}
    sys.argv += [f"{key}={value}" for key, value in RANK_OVERRIDES.items() if key not in given]
    if distributed.launched() and distributed.rank() > 0 and "hydra.run.dir" not in given:
        sys.argv.append("hydra.run.dir=${paths.runs_dir}/.ranks")


def link_scheduler_logs(run_dir: Path) -> Path | None:
    """In a submitit job (``hydra/launcher=slurm|submitit_*``), link the job's submitit folder (the
    SLURM stdout/stderr of each task, ``<job id>_<task>_log.out|err``) into its run folder as
    ``scheduler_logs``, so each job's logs sit beside its results. A requeued job links the same folder."""
    if not os.environ.get("SUBMITIT_FOLDER"):
        return None
    from submitit import JobEnvironment

    target = JobEnvironment().paths.folder.resolve()  # the folder with %j filled in
    link = Path(run_dir) / "scheduler_logs"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == target:
        return link
    scratch = link.with_name(f".scheduler_logs.{os.getpid()}")
    scratch.unlink(missing_ok=True)
    scratch.symlink_to(os.path.relpath(target, link.parent))
    os.replace(scratch, link)  # a rerun's link replaces an older one whole
    return link


register_rank_resolvers()
