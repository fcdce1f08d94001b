"""The config schema (weaks2strong/runtime/schema.py): plain configs in, one line naming the key out.

These check the schema against plain dicts, so they do not depend on the YAML files; one test composes
every shipped option to check that the YAML defaults satisfy it.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from weaks2strong.runtime.errors import UserInputError
from weaks2strong.runtime.schema import GROUPS, declared, problem, validate


def nested(key: str, value) -> dict:
    node = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


# (key, bad value, the whole line)
BAD = [
    ("seed", "abc", "config key 'seed' must be an integer, got 'abc'"),
    ("seed", 1.5, "config key 'seed' must be an integer, got 1.5"),
    ("seed", True, "config key 'seed' must be an integer, got True"),
    ("seed", -1, "config key 'seed' must be in [0, 4294967295], got -1"),
    ("seed", 2**32, "config key 'seed' must be in [0, 4294967295], got 4294967296"),
    ("seeds.student", -2, "config key 'seeds.student' must be in [0, 4294967295], got -2"),
    ("task.sizes.val", -1, "config key 'task.sizes.val' must be >= 1, got -1"),
    ("task.sizes.test", 0, "config key 'task.sizes.test' must be >= 1, got 0"),
    ("task.sizes.weak_train", "many", "config key 'task.sizes.weak_train' must be an integer, got 'many'"),
    ("task.split_seed", -5, "config key 'task.split_seed' must be in [0, 4294967295], got -5"),
    ("task.name", [1, 2], "config key 'task.name' must be a string, got [1, 2]"),
    ("student.data.batch_size", 0, "config key 'student.data.batch_size' must be >= 1, got 0"),
    ("student.data.max_length", 4, "config key 'student.data.max_length' must be >= 8, got 4"),
    ("student.model.optimizer.lr", 0, "config key 'student.model.optimizer.lr' must be > 0, got 0"),
    ("student.model.optimizer.lr", "fast", "config key 'student.model.optimizer.lr' must be a number, got 'fast'"),
    ("student.model.optimizer.weight_decay", -0.1,
     "config key 'student.model.optimizer.weight_decay' must be >= 0, got -0.1"),
    ("student.model.loss", "nope", "config key 'student.model.loss' must be one of soft_ce, logconf, got 'nope'"),
    ("student.net.dropout", 1.0, "config key 'student.net.dropout' must be in [0, 1), got 1.0"),
    ("student.net.dropout", -0.5, "config key 'student.net.dropout' must be in [0, 1), got -0.5"),
    ("student.encoder", None, "config key 'student.encoder' must be a string, got None"),
    ("trainer.max_epochs", 0,
     "config key 'trainer.max_epochs' must be >= 1, got 0 (0 epochs would report untrained models as results)"),
    ("trainer.max_steps", 0, "config key 'trainer.max_steps' must be -1 (no limit) or >= 1, got 0 (it would "
                             "report an untrained model as a result)"),
    ("trainer.max_steps", -2, "config key 'trainer.max_steps' must be -1 (no limit) or >= 1, got -2 (it would "
                              "report an untrained model as a result)"),
    ("trainer.limit_train_batches", 0, "config key 'trainer.limit_train_batches' must be a count of batches >= 1 or "
                                       "a fraction in (0, 1], got 0 (it would report an untrained model as a result)"),
    ("trainer.limit_train_batches", 0.0, "config key 'trainer.limit_train_batches' must be a count of batches >= 1 "
                                         "or a fraction in (0, 1], got 0.0 (it would report an untrained model as a "
                                         "result)"),
    ("trainer.limit_train_batches", 1.5, "config key 'trainer.limit_train_batches' must be a count of batches >= 1 "
                                         "or a fraction in (0, 1], got 1.5"),
    ("trainer.limit_train_batches", "all", "config key 'trainer.limit_train_batches' must be a count of batches or "
                                           "a fraction in (0, 1], got 'all'"),
    ("align.epochs", 0, "config key 'align.epochs' must be >= 1, got 0 (it would report an untrained model as a "
                        "result)"),
    ("align.method", "cdpo", "config key 'align.method' must be one of none, dpo, verbalizer_dpo, got 'cdpo'"),
    ("align.init", "tf", "config key 'align.init' must be one of distilled, pretrained, got 'tf'"),
    ("align.model.beta", 0, "config key 'align.model.beta' must be > 0, got 0 (β <= 0 would not pull the policy "
                            "towards the chosen answers)"),
    ("align.model.kind", "hinge", "config key 'align.model.kind' must be one of sigmoid, ipo, got 'hinge'"),
    ("search.guide.epochs", 0, "config key 'search.guide.epochs' must be >= 1, got 0 (an untuned guide scores "
                               "every answer 0: the search would be unguided)"),
    ("trainer.devices", 0,
     "config key 'trainer.devices' must be 'auto', an integer >= 1 (-1: all) or a list of device indices, got 0"),
    ("trainer.devices", [], "config key 'trainer.devices' must be 'auto', an integer >= 1 (-1: all) or a list of "
                            "device indices, got []"),
    ("trainer.devices", 1.5, "config key 'trainer.devices' must be 'auto', an integer >= 1 (-1: all) or a list of "
                             "device indices, got 1.5"),
    ("trainer.num_nodes", 0, "config key 'trainer.num_nodes' must be >= 1, got 0"),
    ("trainer.precision", 1.5,
     "config key 'trainer.precision' must be a string or an integer (e.g. 32-true, bf16-mixed, 16), got 1.5"),
    ("aggregator.weighting", "sqrt",
     "config key 'aggregator.weighting' must be one of none, confidence, confidence_squared, confidence_balanced, "
     "got 'sqrt'"),
    ("aggregator.weighting", None,
     "config key 'aggregator.weighting' must be one of none, confidence, confidence_squared, confidence_balanced, "
     "got None"),
    ("aggregator.anchor", "test",
     "config key 'aggregator.anchor' must be one of none, val, got 'test'"),
    ("refine.method", "icl", "config key 'refine.method' must be one of none, in_context, got 'icl'"),
    ("refine.model.shots", 0, "config key 'refine.model.shots' must be >= 1, got 0"),
    ("refine.model.calibrate", True,
     "config key 'refine.model.calibrate' must be one of weak_prior, content_free, none, got True"),
    ("optimized_metric", "pgr.test.vs_best_teacher",
     "config key 'optimized_metric' must not read the test split, got 'pgr.test.vs_best_teacher': the test split "
     "decides nothing; choose a val metric, e.g. pgr.val.vs_best_teacher"),
    ("optimized_metric", "student.TEST_accuracy",
     "config key 'optimized_metric' must not read the test split, got 'student.TEST_accuracy': the test split "
     "decides nothing; choose a val metric, e.g. pgr.val.vs_best_teacher"),
    ("optimized_metric", "pgr..val", "config key 'optimized_metric' must be a dotted path into metrics.json "
                                     "(e.g. pgr.val.vs_best_teacher), got 'pgr..val'"),
]

GOOD = [
    ("seed", 0), ("seed", "7"), ("seed", 2**32 - 1), ("task.sizes.val", 1), ("student.data.max_length", 8),
    ("student.model.optimizer.lr", "1e-5"), ("student.model.optimizer.lr", 1),
    ("student.model.optimizer.weight_decay", 0),
    ("student.model.loss", "logconf"), ("student.net.dropout", 0.0), ("trainer.max_epochs", 1),
    ("trainer.max_steps", -1), ("trainer.max_steps", 5), ("trainer.limit_train_batches", 0.25),
    ("trainer.limit_train_batches", 3), ("trainer.limit_train_batches", 1.0), ("align.epochs", 1),
    ("align.init", "pretrained"), ("align.method", "verbalizer_dpo"), ("align.model.beta", 0.05),
    ("trainer.devices", "auto"), ("trainer.devices", -1), ("trainer.devices", 2), ("trainer.devices", [0, 1]),
    ("trainer.devices", "0,1"), ("trainer.precision", "bf16-mixed"), ("trainer.precision", 16),
    ("aggregator.weighting", "confidence_squared"), ("optimized_metric", "pgr.val.vs_best_teacher"),
    ("optimized_metric", None), ("optimized_metric", "teacher_analysis.vader.true_accuracy_w2s_train"),
]


@pytest.mark.parametrize("key, value, line", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_a_bad_value_is_named_in_one_line(key, value, line):
    assert problem(nested(key, value)) == line
    with pytest.raises(UserInputError) as err:
        validate(OmegaConf.create(nested(key, value)))
    assert str(err.value) == line


@pytest.mark.parametrize("key, value", GOOD, ids=[f"{k}={v!r}" for k, v in GOOD])
def test_a_good_value_passes(key, value):
    assert problem(nested(key, value)) is None


def test_only_present_declared_keys_are_checked_and_extra_keys_pass():
    cfg = {
        "seed": 3,  # everything else declared is absent: skipped, not an error
        "teachers": {"vader": {"_target_": "weaks2strong.teachers.Vader", "threshold": "anything"}},
        "aggregator": {"model": {"_target_": "x.Y", "soft_bins": "three"}},  # no weighting: nothing to check
        "student": {"model": {"_target_": "m.M", "_partial_": True, "aux_coef": "whatever"}, "recipe": {"x": 1}},
        "trainer": {"_target_": "pytorch_lightning.Trainer", "strategy": "ddp", "max_epochs": 2},
        "task": {"sizes": {"test": 5, "extra_split": -1}, "classes": [True, False], "path": "???"},
    }
    assert problem(cfg) is None
    assert problem({}) is None


def test_missing_and_unresolvable_values_are_left_to_whoever_needs_them():
    assert problem({"task": {"name": "???", "sizes": {"test": "${no.such.key}"}}}) is None
    assert problem({"paths": {"output_dir": "${hydra:runtime.output_dir}"}, "seed": 1}) is None


def test_interpolated_seeds_are_checked_after_the_seed_they_read():
    base = {"seed": "abc", "seeds": {k: "${seed}" for k in ("splits", "teachers", "aggregator", "student")},
            "task": {"split_seed": "${seeds.splits}"}}
    assert problem(base) == "config key 'seed' must be an integer, got 'abc'"  # the root cause, not seeds.*
    base["seed"] = 4
    assert problem(base) is None
    base["seeds"]["splits"] = -1
    assert problem(base) == "config key 'seeds.splits' must be in [0, 4294967295], got -1"


def test_the_first_bad_key_in_declaration_order_is_named():
    cfg = {"trainer": {"max_epochs": 0}, "seed": "x", "student": {"data": {"batch_size": 0}}}
    assert problem(cfg) == "config key 'seed' must be an integer, got 'x'"


def test_every_declared_key_has_a_rule_and_the_schemas_are_in_hydras_config_store():
    from hydra.core.config_store import ConfigStore

    keys = [k for k, _, _ in declared()]
    assert len(keys) == len(set(keys)) and {"seed", "student.data.batch_size", "trainer.max_epochs"} <= set(keys)
    store = ConfigStore.instance()
    for name in GROUPS:
        node = store.load(f"schema/{name}.yaml").node
        assert OmegaConf.get_type(node) is GROUPS[name]
    assert list(store.load("schema/student.yaml").node.data.keys()) == ["batch_size", "max_length"]


def _options(group: str) -> list[str]:
    from weaks2strong.runtime.resolvers import CONFIG_DIR

    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


SHIPPED_GROUPS = ("task", "aggregator", "refine", "trainer", "student", "experiment")


@pytest.mark.parametrize("override", [f"{g}={o}" for g in SHIPPED_GROUPS for o in _options(g)] + ["debug=fast"])
def test_every_shipped_option_satisfies_the_schema(override, tmp_path):
    from weaks2strong.runtime.checks import check_command_line

    (tmp_path / "x.csv").write_text("text,label\nfine,positive\n")  # the pre-check reads the header of task.path
    extra = [f"task.path={tmp_path}/x.csv"] if override == "task=csv" else []  # task.path is ??? until given
    found = check_command_line([override, *extra])
    if override == "trainer=deepspeed" and importlib.util.find_spec("deepspeed") is None:
        assert found.startswith("config key 'trainer.strategy' is 'deepspeed_stage_2', which needs the deepspeed")
    else:
        assert found is None


def test_the_pre_check_names_the_key_and_a_sweep_is_checked_with_its_first_value():
    from weaks2strong.runtime.checks import check_command_line

    assert check_command_line(["seed=abc", "debug=fast"]) == "config key 'seed' must be an integer, got 'abc'"
    assert check_command_line(["-m", "seed=abc,0"]) == "config key 'seed' must be an integer, got 'abc'"
    assert check_command_line(["-m", "seed=0,abc"]) is None  # job 1 is refused by main (next test)


@pytest.mark.integration
def test_a_sweep_job_with_a_bad_value_fails_in_one_line_and_the_sweep_records_it(tmp_path):
    sweep = tmp_path / "sweep"
    # job 0 fails fast too (no dataset mirror there), so the test trains nothing
    done = subprocess.run([sys.executable, "-m", "weaks2strong.cli", "-m", "debug=fast", "teachers=lexical",
                           "logger=none", "paths.data_mirror=/nonexistent", "seed=0,abc",
                           f"paths.runs_dir={tmp_path}/runs", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    line = "w2s: error: config key 'seed' must be an integer, got 'abc'"
    assert line in done.stderr.splitlines(), done.stderr[-3000:]
    failed = (sweep / "1" / "failed.txt").read_text()
    assert " seed=abc " in failed and "-> UserInputError: config key 'seed' must be an integer, got 'abc'" in failed
    assert not list((tmp_path / "runs" / ".cache").glob("*/*/manifest.json"))  # no stage ran for it
