"""Cluster launches: every rank runs the Hydra job, only rank 0 writes the config copy and the job log.

Both tests run the real entry point as several processes that stop early: the data mirror does not
exist, so after Hydra has made the run dir and the ranks have joined one gloo group, each rank
fails at task loading ('dataset file not found').
"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

W2S = [sys.executable, "-m", "weaks2strong.cli", "logger=none", "paths.data_mirror=/nonexistent"]
HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}


def clean_env(**variables: str) -> dict[str, str]:
    """This environment without any launcher's variables, plus ``variables``."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("SLURM_", "SUBMITIT_"))}
    return {**env, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1", **variables}


def free_slurm_job_id() -> str:
    """A job id whose rendezvous port (Lightning's SLURMEnvironment: 15000 + its last 4 digits) is free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if 15000 <= port < 25000:
            return f"77{port - 15000:04d}"
    for port in range(15000 + os.getpid() % 5000, 25000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return f"77{port - 15000:04d}"
    raise RuntimeError("no free port in 15000-24999")


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"timed out; stderr: {err[-3000:]}")
    return process.returncode, err


def test_srun_ranks_above_zero_write_no_config_and_no_job_log(tmp_path):
    """``srun w2s ...`` with 2 tasks: rank 1 is started first and left waiting for rank 0 at the
    rendezvous (inside the job function, after Hydra's setup), so what it wrote can be told apart."""
    run = tmp_path / "run"
    slurm = {"SLURM_NTASKS": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_JOB_ID": free_slurm_job_id(),
             "SLURM_NODELIST": "localhost", "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_NAME": "w2s",
             "SLURM_STEP_ID": "0", "SLURM_NTASKS_PER_NODE": "2"}
    args = [*W2S, f"hydra.run.dir={run}", f"paths.runs_dir={tmp_path}/runs"]

    def start(rank: int) -> subprocess.Popen:
        env = clean_env(**slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank))
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    started = time.monotonic()
    rank1 = start(1)
    try:
        while not (run / "rank1.log").exists():  # Hydra opens the job log, then would save the config
            assert rank1.poll() is None, rank1.communicate()[1][-3000:]
            assert time.monotonic() - started < 60, "rank 1 made no log in 60 s"
            time.sleep(0.2)
        time.sleep(1.0)
        assert sorted(p.name for p in run.iterdir()) == ["rank1.log"]  # no .hydra/, no cli.log
        rank0 = start(0)
    except BaseException:
        rank1.kill()
        raise
    (rc0, err0), (rc1, err1) = finish(rank0, 60), finish(rank1, 30)

    assert rc0 == 2 and "w2s: error: dataset file not found: /nonexistent" in err0, err0[-3000:]
    assert rc1 == 2 and "error" not in err1.lower(), err1[-3000:]  # only rank 0 reports
    assert {p.name for p in (run / ".hydra").iterdir()} == HYDRA_FILES
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "cli.log", "rank1.log"]
    assert "rank1" not in (run / ".hydra" / "hydra.yaml").read_text()  # rank 0's copy, untouched


@pytest.mark.integration  # three processes that each import the pipeline: ~45 s on 2 busy cores
def test_submitit_job_with_two_tasks_writes_one_config(tmp_path):
    """``hydra/launcher=submitit_local`` with 2 tasks per job, as ``slurm`` runs them on a node: the
    tasks compose the job from the submitting ``w2s -m``'s overrides, not from a command line."""
    sweep = tmp_path / "sweep"
    args = [*W2S[:3], "-m", *W2S[3:], "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.timeout_min=2", f"hydra.sweep.dir={sweep}", f"paths.runs_dir={tmp_path}/runs"]
    rc, err = finish(subprocess.Popen(args, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True), 120)
    job = sweep / "0"
    task_err = {p.name.split("_")[1]: p.read_text() for p in sweep.glob(".submitit/*/*_log.err")}
    assert "w2s: error: dataset file not found: /nonexistent" in task_err.get("0", ""), (err[-2000:], task_err)
    assert "rank 0 failed" not in task_err.get("1", "") and "Traceback" not in task_err.get("1", "Traceback")
    assert {p.name for p in (job / ".hydra").iterdir()} == HYDRA_FILES
    assert {".hydra", "cli.log", "rank1.log"} <= {p.name for p in job.iterdir()}  # and failed.txt, the sweep's
    assert sorted(p.name for p in Path(tmp_path / "runs").iterdir()) == [".cache"]  # no stray run dirs
