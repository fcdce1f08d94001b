"""Real jobs on a local SLURM cluster: ``make test-slurm`` starts one (tests/slurm/start_cluster.sh),
runs this module with ``-m slurm`` and stops it. ``make test`` leaves these tests out.

Every job goes the way a user's does: ``w2s -m hydra/launcher=slurm ...`` -> Hydra's submitit
launcher -> ``sbatch`` -> slurmctld -> slurmd -> ``srun`` -> the job. Jobs ask for 1 CPU and 4 GB a
task, so two run at once on the 2-CPU node.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_distributed import COMMON, assert_matches_one_process, probs
from test_launch import HYDRA_FILES, finish

pytestmark = pytest.mark.slurm

W2S = [sys.executable, "-m", "weaks2strong.cli"]
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4",
            "hydra.launcher.timeout_min=20", "hydra.launcher.setup=['export OMP_NUM_THREADS=1']"]


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    """The environment to submit from; fails (not skips) when no cluster answers."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    found = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env) \
        if "SLURM_CONF" in env else None
    if found is None or found.returncode != 0 or not {"idle", "mix", "alloc"} & set(found.stdout.split()):
        pytest.fail("no local SLURM cluster answers: run `make test-slurm` (tests/slurm/start_cluster.sh "
                    f"prints the SLURM_CONF to export); sinfo said {found and (found.stdout + found.stderr)!r}")
    return env


def sweep_command(sweep: Path, *overrides: str) -> list[str]:
    return [*W2S, "-m", *LAUNCHER, *COMMON, *overrides, f"hydra.sweep.dir={sweep}"]


def slurm_ids(sweep: Path) -> dict[int, str]:
    """Job number -> SLURM id, from the folders submitit made: ``<array job>_<index>`` for a sweep of
    several jobs, the plain job id for a sweep of one (submitit submits no array then)."""
    names = [p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+(_\d+)?", p.name)]
    array = {int(n.split("_")[1]): n for n in names if "_" in n}
    if array:
        return array
    assert len(names) == 1, names
    return {0: names[0]}


def job_field(job_id: str, field: str, env: dict) -> str:
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env)
    match = re.search(rf"\b{field}=(\S+)", shown.stdout)
    assert match, f"scontrol show job {job_id}: {shown.stdout}{shown.stderr}"
    return match[1]


def final_state(job_id: str, env: dict, timeout: float = 60) -> str:
    """The job's state once SLURM has seen it end (submitit's result file comes a moment before)."""
    started = time.monotonic()
    while (state := job_field(job_id, "JobState", env)) in ("RUNNING", "COMPLETING", "CONFIGURING"):
        assert time.monotonic() - started < timeout, f"job {job_id} still {state} after {timeout} s"
        time.sleep(0.5)
    return state


def test_sweep_runs_through_slurm_and_reports_the_failed_jobs(cluster, tmp_path, mirror):
    """``seed=0,1`` x a good and a missing data mirror: four array tasks; the two with a bad input
    fail in one line each and exit non-zero, so SLURM marks them FAILED; the sweep summary lists them,
    the two others finish, and ``w2s -m`` exits non-zero."""
    sweep = tmp_path / "sweep"
    command = sweep_command(sweep, "seed=0,1", f"paths.data_mirror={mirror},/nonexistent",
                            f"paths.runs_dir={tmp_path}/runs")
    rc, err = finish(subprocess.Popen(command, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True), 900)

    ids = slurm_ids(sweep)
    assert sorted(ids) == [0, 1, 2, 3] and len({i.split("_")[0] for i in ids.values()}) == 1, ids  # one array
    for job, slurm_id in ids.items():  # Hydra's order: seed outer, mirror inner, so 1 and 3 have no data
        state, exit_code = final_state(slurm_id, cluster), job_field(slurm_id, "ExitCode", cluster)
        assert (state, exit_code) == (("FAILED", "1:0") if job in (1, 3) else ("COMPLETED", "0:0")), (job, state)
        logs = sweep / str(job) / "scheduler_logs"  # the job's SLURM stdout/stderr, linked into its folder
        assert logs.is_symlink() and logs.resolve() == (sweep / ".submitit" / slurm_id).resolve()
        assert f"JobEnvironment(job_id={slurm_id}" in (logs / f"{slurm_id}_0_log.out").read_text()
    for good in (0, 2):
        assert (sweep / str(good) / "metrics.json").is_file()
        assert not (sweep / str(good) / "failed.txt").exists()
    for bad in (1, 3):
        assert not (sweep / str(bad) / "metrics.json").exists()
        assert "dataset file not found: /nonexistent" in (sweep / str(bad) / "failed.txt").read_text()
    summary = (sweep / "sweep_summary.md").read_text()
    assert f"| paths.data_mirror={mirror} | 2 |" in summary
    assert "Failed jobs:" in summary and summary.count("dataset file not found") == 2
    assert rc != 0 and "dataset file not found" in err  # the sweep as a whole reports failure


def test_two_task_ddp_job_matches_one_process(cluster, tmp_path):
    """One job, ``tasks_per_node=2`` (from ``trainer.devices=2``): Lightning's SLURM environment
    takes the ranks from srun, teachers label a shard each, only rank 0 writes; the artifacts match
    one process with the same global batch (run here meanwhile) to the README's bounds."""
    sweep = tmp_path / "sweep"
    command = sweep_command(sweep, "trainer=ddp", "trainer.devices=2", "student.data.batch_size=8",
                            f"paths.runs_dir={tmp_path}/ddp")
    job = subprocess.Popen(command, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    single = subprocess.run([*W2S, *COMMON, "student.data.batch_size=16", f"paths.runs_dir={tmp_path}/single",
                             f"hydra.run.dir={tmp_path}/single/run"], env=cluster, capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    rc, err = finish(job, 900)
    assert rc == 0, err[-3000:]

    slurm_id = slurm_ids(sweep)[0]
    run = sweep / "0"
    assert_matches_one_process(read_artifacts(tmp_path / "single" / "run"), read_artifacts(run))
    assert {p.name for p in (run / ".hydra").iterdir()} == HYDRA_FILES  # rank 0's copy only
    assert {"cli.log", "rank1.log", "metrics.json", "scheduler_logs"} <= {p.name for p in run.iterdir()}
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [".cache"]  # no stray run dirs
    for rank in (0, 1):  # srun started both tasks of the one job
        started = (run / "scheduler_logs" / f"{slurm_id}_{rank}_log.out").read_text()
        assert f"global_rank={rank}(2)" in started
    assert job_field(slurm_id, "NumTasks", cluster) == "2"


def read_artifacts(run: Path) -> dict:
    return json.loads((run / "artifacts.json").read_text())


def test_preempted_job_resumes_from_its_checkpoint(cluster, tmp_path):
    """Two identical jobs, each with its own cache. Job 0 gets SIGUSR2 after the ceiling's first
    epoch, as SLURM signals a job before its time limit or on preemption: submitit checkpoints the
    launcher's call and requeues the job, which reruns in the same folder, reuses the finished stages
    and resumes training from the stage's last checkpoint. Its predictions equal job 1's, which ran
    straight through."""
    sweep = tmp_path / "sweep"
    command = sweep_command(sweep, "trainer.max_epochs=3", "task.sizes.w2s_train=192",
                            f"paths.runs_dir={tmp_path}/a,{tmp_path}/b")
    job = subprocess.Popen(command, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = sweep / "0" / "checkpoints" / "ceiling" / "last.ckpt"
    started = time.monotonic()
    while not checkpoint.is_file():  # Lightning writes it whole (a temporary file, then a rename)
        assert job.poll() is None, job.communicate()[1][-3000:]
        assert time.monotonic() - started < 600, "no ceiling checkpoint after 600 s"
        time.sleep(0.5)
    slurm_id = slurm_ids(sweep)[0]
    subprocess.run(["scancel", "--signal=USR2", slurm_id], env=cluster, check=True)
    while job_field(slurm_id, "JobState", cluster) != "PENDING":  # requeued
        assert time.monotonic() - started < 700, job_field(slurm_id, "JobState", cluster)
        time.sleep(0.5)
    # SLURM holds a requeued job for cred_expire + 1 s (21 s here) before it may start again. Starting it
    # at once (scontrol update StartTime=now) raced the old run's exit: SLURM counted that exit as the
    # new run's, ended the job before it ran, and the sweep waited for a result that never came.
    rc, err = finish_watched(job, list(slurm_ids(sweep).values()), sweep, cluster, timeout=900)
    assert rc == 0, err[-3000:]

    log = (sweep / "0" / "scheduler_logs" / f"{slurm_id}_0_log.out").read_text()
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log
    assert f"resuming from {checkpoint}" in log
    assert job_field(slurm_id, "Restarts", cluster) == "1"
    assert job_field(slurm_ids(sweep)[1], "Restarts", cluster) == "0"
    interrupted, straight = read_artifacts(sweep / "0"), read_artifacts(sweep / "1")
    for stage in ("ceiling", "student"):
        assert interrupted[stage] != straight[stage]  # two caches: job 0 did not reuse job 1's training
        np.testing.assert_array_equal(probs(interrupted[stage], "predictions").to_numpy(),
                                      probs(straight[stage], "predictions").to_numpy())


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def finish_watched(process: subprocess.Popen, jobs: list[str], sweep: Path, env: dict, timeout: float,
                   pending_limit: float = 300, ended_grace: float = 120) -> tuple[int, str]:
    """``finish`` that watches the sweep's jobs meanwhile and fails early, with the scheduler's view
    and the jobs' own logs, when one stays pending (a held job or a drained node) or all have ended
    without the sweep noticing (this cluster has no accounting, so submitit learns of an end only
    from the job's result file, and a job killed before writing one leaves the sweep waiting)."""
    started = time.monotonic()
    pending_since = ended_at = None
    while process.poll() is None:
        states = [job_field(job, "JobState", env) for job in jobs]
        now = time.monotonic()
        pending_since = (pending_since or now) if "PENDING" in states else None
        ended_at = (ended_at or now) if all(state in ENDED for state in states) else None
        problem = ("timed out" if now - started > timeout else
                   f"one PENDING for {pending_limit:.0f} s" if pending_since and now - pending_since > pending_limit
                   else f"all ended {ended_grace:.0f} s ago, the sweep still waiting" if ended_at
                   and now - ended_at > ended_grace else None)
        if problem:
            process.kill()
            _, err = process.communicate()
            views = "\n".join([*(scheduler_view(job, sweep, env) for job in jobs), controller_log(env)])
            pytest.fail(f"jobs {jobs} ({', '.join(states)}): {problem}\n{views}\nsweep stderr: {err[-2000:]}")
        time.sleep(1)
    _, err = process.communicate()
    return process.returncode, err


def scheduler_view(slurm_id: str, sweep: Path, env: dict) -> str:
    """What a person would look at first: the job's own output (every attempt appends to the same
    files), then the job and node as SLURM sees them."""
    parts = [f"--- {path}\n{path.read_text(errors='replace')[-2000:]}"
             for path in sorted((sweep / ".submitit" / slurm_id).glob("*_log.*"))]
    for args in (["scontrol", "show", "job", slurm_id], ["sinfo", "-R"]):
        done = subprocess.run(args, capture_output=True, text=True, env=env)
        parts.append(f"--- {' '.join(args)}\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def controller_log(env: dict) -> str:
    path = Path(env["SLURM_CONF"]).parent / "slurmctld.log"
    return f"--- {path}\n{path.read_text(errors='replace')[-2000:]}"
