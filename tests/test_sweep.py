import json
from pathlib import Path

import pandas as pd
import pytest

from weaks2strong.runtime.sweep import write_summary


def _job(folder, overrides, student, teachers, pgr=0.5, seed=0):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    acc = lambda a: {"test": {"accuracy": a}, "val": {"accuracy": a}}  # noqa: E731
    metrics = {"student": acc(student), "ceiling": acc(0.9),
               "aggregate": {**acc(0.7), "w2s_train": {"accuracy": 0.72}},
               "teachers": {n: acc(a) for n, a in teachers.items()}, "best_teacher": max(teachers, key=teachers.get),
               "pgr": {s: {"vs_best_teacher": pgr, "vs_aggregate": 0.4} for s in ("val", "test")},
               "misfit": {"w2s_train": {"gain_ge_misfit": True}},
               "seeds": {"splits": 0, "teachers": 0, "aggregator": seed, "student": seed}}
    (folder / "metrics.json").write_text(json.dumps(metrics).replace("NaN", "NaN"))


def test_sweep_summary_groups_seeds_and_lists_each_groups_teachers(tmp_path):
    _job(tmp_path / "0", ["experiment=sst2", "seed=0"], 0.80, {"vader": 0.6, "tfidf": 0.7}, seed=0)
    _job(tmp_path / "1", ["experiment=sst2", "seed=1"], 0.84, {"vader": 0.6, "tfidf": 0.7}, pgr=float("nan"), seed=1)
    _job(tmp_path / "2", ["experiment=boolq", "seed=0"], 0.66, {"tfidf": 0.62, "smollm2": 0.55})
    (tmp_path / "3").mkdir()  # a job that died before writing metrics is left out
    table = write_summary(tmp_path)
    # 2 runs, student mean ± sample std of 0.80 and 0.84, both finite
    assert "| experiment=sst2 | 2 | 0.8200 ± 0.0283 (2/2) |" in table
    assert "| experiment=boolq | 1 | 0.6600 ± 0.0000 (1/1) |" in table
    # an undefined PGR is counted, not silently dropped: one finite value of two
    sst2 = next(line for line in table.splitlines() if line.startswith("| experiment=sst2 | 2 |"))
    assert "0.5000 ± 0.0000 (1/2)" in sst2
    assert "Seeds within each group: splits fixed (0); teachers fixed (0); aggregator varied (0, 1); " \
           "student varied (0, 1)." in table
    teacher_rows = [line for line in table.splitlines() if "smollm2 0.550" in line]
    assert teacher_rows == ["| experiment=boolq | tfidf 0.620, smollm2 0.550 | 0.700 | 0.660 | 0.900 | "
                            "0.5000 ± 0.0000 (1/1) |"]
    assert (tmp_path / "sweep_summary.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "sweep_runs.csv")) == 3


def test_sweep_summary_of_an_empty_sweep_writes_nothing(tmp_path):
    assert write_summary(tmp_path) is None
    assert not (tmp_path / "sweep_summary.md").exists()


@pytest.mark.parametrize("argv", [[], ["/no/such/dir"]])
def test_sweep_cli_usage(argv):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "weaks2strong.runtime.sweep", *argv], capture_output=True, text=True)
    assert result.returncode == 1 and "usage: python -m weaks2strong.runtime.sweep <sweep dir>" in result.stderr


@pytest.mark.integration
def test_a_failed_job_does_not_stop_the_sweep_and_is_listed(tmp_path):
    import subprocess
    import sys

    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "weaks2strong.cli", "-m", "debug=fast", "teachers=lexical",
                           "logger=none", "task.sizes.test=100000,96", f"paths.runs_dir={tmp_path}/runs",
                           f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0  # Hydra reports the failure when the sweep ends ...
    assert "w2s: error: task.sizes.test=100000 is more than" in done.stderr
    assert (sweep / "1" / "metrics.json").is_file(), done.stderr[-3000:]  # ... after running the job that came next
    failed = (sweep / "0" / "failed.txt").read_text()
    assert "task.sizes.test=100000" in failed and "-> TaskError: task.sizes.test=100000 is more than" in failed
    summary = (sweep / "sweep_summary.md").read_text()
    assert "| task.sizes.test=96 | 1 |" in summary
    assert "Failed jobs:\n- 0: " in summary and "TaskError: task.sizes.test=100000" in summary


def test_sweep_summary_averages_interval_coverage_and_mae_per_aggregator(tmp_path):
    def job(name, overrides, summary, seed):
        _job(tmp_path / name, overrides, 0.8, {"vader": 0.6}, seed=seed)
        if summary is not None:  # an aggregator without estimates writes none
            path = tmp_path / name / "metrics.json"
            metrics = json.loads(path.read_text())
            path.write_text(json.dumps({**metrics, "teacher_estimates_summary": summary}))

    job("0", ["aggregator=bayes", "seed=0"], {"coverage": 1.0, "n": 3, "mae": 0.02}, 0)
    job("1", ["aggregator=bayes", "seed=1"], {"coverage": 2 / 3, "n": 3, "mae": 0.04}, 1)
    job("2", ["aggregator=majority", "seed=0"], {"coverage": None, "n": 0, "mae": None}, 0)
    job("3", ["aggregator=majority", "seed=1"], None, 1)
    table = write_summary(tmp_path)
    header = next(line for line in table.splitlines() if line.startswith("| group | runs |"))
    assert header.endswith("| interval_coverage | teacher_mae |")
    bayes = next(line for line in table.splitlines() if line.startswith("| aggregator=bayes | 2 |"))
    # coverage 1 and 2/3: mean .8333, sample std .2357; MAE .02 and .04: mean .03, std .0141
    assert bayes.endswith("| 0.8333 ± 0.2357 (2/2) | 0.0300 ± 0.0141 (2/2) |")
    majority = next(line for line in table.splitlines() if line.startswith("| aggregator=majority | 2 |"))
    assert majority.endswith("| n/a (0/2) | n/a (0/2) |")


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    from weaks2strong.runtime.resolvers import CONFIG_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_the_ceiling_keeps_its_own_optimizer_when_the_students_is_overridden():
    """The student YAML's optimizer as written is the ceiling's (``student.ceiling``); the slices that
    key the two stages never hold the copy, so with no override they are what they were before it."""
    from weaks2strong.pipeline.classification.distill import ceiling_config
    from weaks2strong.pipeline.common.config import config_slice, settings_for

    plain = _compose()
    swept = _compose("student.model.optimizer.lr=1e-4")
    ceilings = [config_slice(ceiling_config(c).student) for c in (plain, swept)]
    students = [config_slice(settings_for(c, "student", ceiling=False).student) for c in (plain, swept)]
    assert ceilings[0] == ceilings[1] == students[0]  # one ceiling; with no override, the student's recipe
    assert [s["model"]["optimizer"]["lr"] for s in (*ceilings, *students)] == [5e-5, 5e-5, 5e-5, 1e-4]
    assert not any("ceiling" in s for s in (*ceilings, *students))
    moved = config_slice(ceiling_config(_compose("student.ceiling.model.optimizer.lr=1e-4")).student)
    assert moved["model"]["optimizer"]["lr"] == 1e-4
    # the preference path's gold-DPO'd student (its ceiling): align.ceiling, as chosen in experiment=hh_harmless
    hh = _compose("experiment=hh_harmless", "align.model.optimizer.lr=3e-4")
    lr = [settings_for(hh, "align", ceiling=c).align.model.optimizer.lr for c in (True, False)]
    assert lr == [1e-4, 3e-4]


PGR = "optimized_metric=pgr.val.vs_best_teacher"  # an objective the ceiling enters


@pytest.mark.parametrize("overrides, refused", [
    (["hparams_search=optuna"], None),  # its params: the aggregator and student.model.optimizer.lr, which is pinned
    (["hparams_search=optuna", "student.model.optimizer.weight_decay=interval(0,0.1)"], None),
    (["hparams_search=optuna", "student.model.loss=soft_ce,logconf"], None),  # the ceiling's loss is soft_ce
    (["hparams_search=optuna", "trainer.max_epochs=1,2"], None),  # its objective (student.val.accuracy) has no ceiling
    (["trainer.max_epochs=1,2"], None),  # the basic sweeper lists runs, it optimises nothing
    (["hparams_search=optuna", PGR, "trainer.max_epochs=1,2"], "the sweep tunes trainer.max_epochs, which trains the "
     "ceiling too: optimising pgr.val.vs_best_teacher would move its own yardstick; the ceiling shares the trainer"),
    (["hparams_search=optuna", PGR, "+hydra.sweeper.params.student.data.batch_size=choice(16,32)"],
     "the sweep tunes student.data.batch_size, which trains the ceiling too: optimising pgr.val.vs_best_teacher would "
     "move its own yardstick; pin the ceiling's (student.ceiling.data.batch_size)"),
    (["hparams_search=optuna", PGR, "student.ceiling.model.optimizer.lr=interval(1e-5,1e-4)"],
     "the sweep tunes student.ceiling.model.optimizer.lr, the ceiling's own"),
])
def test_an_optimising_sweep_may_not_tune_what_trains_the_ceiling(overrides, refused):
    from weaks2strong.runtime.checks import check_command_line

    said = check_command_line(["-m", *overrides])
    assert said == refused if refused is None else said.startswith(refused), said


@pytest.mark.integration
def test_optuna_trials_with_different_student_lr_share_one_ceiling(tmp_path):
    """The real Optuna sweeper (hparams_search=optuna, 2 trials) on tiny models: the trials' lr differ,
    their students differ, and both score against the one ceiling artifact the first trained. (The
    objective is the student's val accuracy: a tiny-bert ceiling trained one epoch does not beat the
    best teacher, so PGR is undefined, and hydra-optuna-sweeper 1.3 fails the sweep on a NaN value.)"""
    import subprocess
    import sys

    import yaml

    sweep, runs = tmp_path / "sweep", tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "weaks2strong.cli", "-m", "hparams_search=optuna",
                           "hydra.sweeper.n_trials=2", "optimized_metric=student.val.accuracy", "debug=fast",
                           "teachers=lexical", "student.encoder=tiny-bert", "logger=none", "trainer.accelerator=cpu",
                           f"paths.runs_dir={runs}", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [sweep / str(i) for i in (0, 1)]
    lrs = [next(float(o.split("=")[1]) for o in yaml.safe_load((t / ".hydra" / "overrides.yaml").read_text())
                if o.startswith("student.model.optimizer.lr=")) for t in trials]
    assert lrs[0] != lrs[1] and all(1e-5 <= lr <= 1e-4 for lr in lrs), lrs
    artifacts = [json.loads((t / "artifacts.json").read_text()) for t in trials]
    assert artifacts[0]["ceiling"] == artifacts[1]["ceiling"] and artifacts[0]["student"] != artifacts[1]["student"]
    assert len(list((runs / ".cache" / "ceiling").glob("*/manifest.json"))) == 1  # the store holds one ceiling
    assert "ceiling: reused" in (trials[1] / "cli.log").read_text()  # trial 1 trained no ceiling of its own

    def lr_of(artifact: str) -> float:  # the lr the stage was keyed and trained with, as its manifest records it
        config = json.loads((Path(artifact) / "manifest.json").read_text())["config"]
        return config["student"]["model"]["optimizer"]["lr"]

    assert lr_of(artifacts[0]["ceiling"]) == 5e-5  # conf/student/minilm.yaml's, as written
    assert [lr_of(a["student"]) for a in artifacts] == pytest.approx(lrs)
    metrics = [json.loads((t / "metrics.json").read_text()) for t in trials]
    assert metrics[0]["ceiling"]["val"] == metrics[1]["ceiling"]["val"]  # one yardstick for both trials' PGR


def test_a_sweep_where_every_job_failed_still_writes_its_summary(tmp_path):
    for job, error in (("0", "TaskError: dataset file not found: /x"), ("1", "JobFailed: job 7_1: killed")):
        (tmp_path / job).mkdir()
        (tmp_path / job / "failed.txt").write_text(f"seed={job} -> {error}\n")
    table = write_summary(tmp_path)
    assert table == ("No job finished.\n\nFailed jobs:\n- 0: seed=0 -> TaskError: dataset file not found: /x\n"
                     "- 1: seed=1 -> JobFailed: job 7_1: killed\n")
    assert (tmp_path / "sweep_summary.md").read_text() == table


def test_a_failed_submitit_job_becomes_a_failed_job_return_and_is_listed(tmp_path):
    """Real submitit jobs (its local executor): one raises, one dies without a result, one succeeds.
    ``collect`` waits for each, and the failed ones become Hydra's failed JobReturn with their error's
    last line, and a failed.txt where the job left none."""
    import os

    import submitit
    from hydra.core.utils import JobStatus

    from weaks2strong.runtime.scheduler import JobFailed, collect

    def bad_input():
        raise ValueError("dataset file not found: /nonexistent/sst2/train.tsv")

    def killed():
        os._exit(9)

    executor = submitit.AutoExecutor(folder=tmp_path / ".submitit", cluster="local")
    executor.update_parameters(timeout_min=2)
    jobs = [executor.submit(f) for f in (bad_input, killed, lambda: "fine")]
    raised, died, fine = (collect(job, [f"job={i}"], tmp_path / str(i)) for i, job in enumerate(jobs))
    assert fine == "fine"  # not a JobReturn here: collect hands back whatever the job returned
    for done in (raised, died):
        assert done.status == JobStatus.FAILED
    with pytest.raises(JobFailed, match=r"^job \d+: ValueError: dataset file not found: /nonexistent/sst2/train.tsv$"):
        _ = raised.return_value
    assert (tmp_path / "0" / "failed.txt").read_text() == \
        "job=0 -> ValueError: dataset file not found: /nonexistent/sst2/train.tsv\n"
    assert (tmp_path / "1" / "failed.txt").read_text().startswith("job=1 -> ")
    err = jobs[0].stderr()  # submitit re-raised the error: the task exited non-zero (SLURM's FAILED)
    assert "Submitted job triggered an exception" in err and "ValueError: dataset file not found" in err


@pytest.mark.integration
def test_a_sweeper_that_goes_on_past_a_failed_job_still_exits_non_zero(tmp_path, mirror):
    """hydra/launcher=local (submitit processes, as on SLURM) with Optuna told to tolerate failures
    (max_failure_rate=1): one trial cannot load its task, the other trains; the sweep finishes, lists
    the failure, and ``w2s -m`` exits 1 instead of the 0 the sweeper would end with."""
    import subprocess
    import sys

    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "weaks2strong.cli", "-m", "hydra/launcher=local",
                           "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.max_failure_rate=1.0",
                           f"paths.data_mirror=choice({mirror},/nonexistent)",
                           "optimized_metric=student.val.accuracy", "debug=fast", "teachers=lexical",
                           "student.encoder=tiny-bert", "logger=none", "trainer.accelerator=cpu",
                           f"paths.runs_dir={tmp_path}/runs", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 1, done.stderr[-3000:]
    failed, finished = sorted(sweep.glob("*/failed.txt")), sorted(sweep.glob("*/metrics.json"))
    assert len(failed) == 1 and len(finished) == 1, done.stderr[-3000:]
    assert "dataset file not found: /nonexistent" in failed[0].read_text()
    summary = (sweep / "sweep_summary.md").read_text()
    assert f"Failed jobs:\n- {failed[0].parent.name}: " in summary and "dataset file not found" in summary
    assert "w2s: error: 1 job(s) of the sweep failed: " in done.stderr
    task_err = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.err"))
    assert "Submitted job triggered an exception" in task_err  # the failed job's process exited non-zero


def test_an_undefined_objective_is_returned_as_none_not_nan(caplog):
    """A NaN (PGR where the ceiling does not clear the weak) would stop an Optuna sweep; None fails that
    one trial, with a line saying why."""
    from weaks2strong.cli import headline

    metrics = {"pgr": {"val": {"vs_best_teacher": float("nan")}}, "student": {"val": {"accuracy": 0.75}}}
    assert headline(metrics, "student.val.accuracy") == 0.75
    assert headline(metrics, "pgr.val.vs_best_teacher") is None
    assert "optimized_metric=pgr.val.vs_best_teacher is undefined (NaN)" in caplog.text
