"""Hydra's submitit launchers (``hydra/launcher=slurm``), with exit codes a scheduler can read.

Hydra's job function catches a job's exception and returns it, so a failed job would end with status 0
and SLURM would call it COMPLETED (``failed.txt`` its only sign). Here the job raises it again once
Hydra's callbacks have run: submitit records the traceback and the task exits 1, so SLURM marks the job
FAILED (``scontrol show job``, ``sacct``, ``--dependency=afterok``). The submitting ``w2s -m`` waits for
every job and turns each failure (raised, killed, out of time or memory) into Hydra's failed job
return, so the sweep collects the others, lists the failure in ``sweep_summary.md`` and exits 1.

Hydra instantiates a launcher only if its class is defined under the ``hydra_plugins`` namespace: the
launchers themselves (this mixin on submitit's) are in hydra_plugins/weaks2strong_launcher/launchers.py,
installed with the package.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A job of the sweep failed; the message is its error's last line."""


class FailedJobsExitNonZero:
    """Mixed into hydra-submitit-launcher's launchers (``BaseSubmititLauncher``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """In the job: Hydra's ``run_job`` (callbacks included, so ``failed.txt`` is written), then
        the job's own error raised again, so that its task exits non-zero."""
        done = super().__call__(*args, **kwargs)  # type: ignore[misc]
        if done.status == JobStatus.FAILED:
            raise done._return_value
        return done

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        """The submitit launcher's ``launch`` (hydra-submitit-launcher 1.2), but a failed job becomes a
        failed ``JobReturn`` instead of an exception that would stop collecting the others."""
        import submitit

        assert self.config is not None
        params = self.params
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=params["submitit_folder"],
                                         **{f"{self._EXECUTOR}_max_num_timeout": params[k]
                                            for k in ("max_num_timeout",) if k in params})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        done = [collect(job, overrides, self._job_dir(sweep_dir, idx))
                for job, (overrides, _, idx, _, _) in zip(jobs, job_params)]
        if any(d.status == JobStatus.FAILED for d in done):
            from weaks2strong.runtime.sweep import write_summary

            write_summary(sweep_dir, quiet=True)  # with what collect wrote for jobs that died unheard
        return done

    def _job_dir(self, sweep_dir: Path, idx: int) -> Path | None:
        """The job's folder, where conf/hydra/default.yaml puts it (``<sweep dir>/<job number>``)."""
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")
        return sweep_dir / str(idx) if subdir == "${hydra.job.num}" else None


def collect(job, overrides: list[str], job_dir: Path | None) -> JobReturn:
    """The job's ``JobReturn`` (rank 0's), or a failed one carrying its error's last line. A job that
    died before Hydra's callbacks could write its ``failed.txt`` (killed, out of time or memory)
    gets one here, so the sweep summary lists it too."""
    from weaks2strong.runtime.artifacts import write_text

    try:
        return job.results()[0]
    except Exception as err:  # noqa: BLE001 - whatever ended the job: submitit says it in its error
        said = last_line(str(err))
    failed = JobReturn(overrides=overrides, status=JobStatus.FAILED)
    failed.return_value = JobFailed(f"job {job.job_id}: {said}")
    if job_dir is not None and not (job_dir / "failed.txt").exists():
        write_text(job_dir / "failed.txt", f"{' '.join(overrides)} -> {said}\n")
    return failed


def last_line(error: str) -> str:
    """The line that names a failed job's error: the last of the traceback submitit recorded (between
    its dashed rules), or the first of submitit's own message (a job that left no result)."""
    parts = re.split(r"\n-{10,}\n", error)
    trace = parts[1] if len(parts) >= 3 else ""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    return lines[-1] if lines else error.strip().splitlines()[0] if error.strip() else "no result"
