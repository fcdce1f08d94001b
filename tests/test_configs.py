"""Every config group option composes, and every ``_target_`` in it names something importable."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf, read_write

from weaks2strong.cli import CONFIG_DIR

GROUPS = ["task", "teachers", "aggregator", "student", "align", "trainer", "logger", "experiment", "debug",
          "hparams_search"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def targets(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        return found + [t for v in node.values() for t in targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in targets(v)]
    return []


@pytest.mark.parametrize("override", [f"{g}={o}" for g in GROUPS for o in options(g)])
def test_option_composes_and_targets_import(override):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[override, "paths.output_dir=/tmp/unused"], return_hydra_config=True)
    resolved = OmegaConf.to_container(cfg, resolve=False)
    resolved.pop("hydra")
    found = targets(resolved)
    assert found, override
    for target in found:
        assert get_object(target) is not None, target


def test_wandb_runs_are_grouped_per_sweep_and_named_per_job():
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=wandb", "seed=3"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert cfg.logger.wandb.group == "sst2" and cfg.logger.wandb.name is None  # a single run: grouped by task
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = "runs/multirun/2026-11-27_12-00-00"
        cfg.hydra.job.num = 4
        cfg.hydra.job.override_dirname = "seed=3"
    HydraConfig.instance().set_config(cfg)
    assert cfg.logger.wandb.group == "sweep-2026-11-27_12-00-00"
    assert cfg.logger.wandb.name == "4:seed=3"
    assert "api_key" not in OmegaConf.to_yaml(cfg.logger)  # the key never lives in a config


@pytest.mark.parametrize("launcher", ["joblib", "slurm", "submitit_slurm", "submitit_local"])
def test_launchers_compose(launcher):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}", "trainer=ddp", "trainer.devices=4",
                                           "trainer.num_nodes=2"], return_hydra_config=True)
    assert get_object(cfg.hydra.launcher._target_) is not None
    if launcher == "slurm":  # one task per GPU, tied to the trainer
        slurm = cfg.hydra.launcher
        assert (slurm.nodes, slurm.tasks_per_node, slurm.gpus_per_node) == (2, 4, 4)


# the README's GPU-cluster example, and the CPU node of tests/test_slurm.py (no GPU asked for)
SLURM_EXAMPLES = {
    "gpu": (["trainer=ddp", "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "trainer.devices=4",
             "trainer.num_nodes=2", "hydra.launcher.partition=gpu", "hydra.launcher.cpus_per_task=8",
             "hydra.launcher.mem_gb=128", "hydra.launcher.timeout_min=720"], (2, 4, 4, 8, 128, "gpu")),
    "cpu": (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "hydra.launcher.cpus_per_task=1",
             "hydra.launcher.mem_gb=4"], (1, 2, None, 1, 4, None)),
}


@pytest.mark.parametrize("example", SLURM_EXAMPLES)
def test_slurm_launcher_asks_for_what_the_trainer_uses(example):
    overrides, expected = SLURM_EXAMPLES[example]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    slurm = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (slurm["nodes"], slurm["tasks_per_node"], slurm["gpus_per_node"], slurm["cpus_per_task"],
            slurm["mem_gb"], slurm["partition"]) == expected


def test_slurm_launcher_refuses_a_device_count_that_is_not_a_number():
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True)
    with pytest.raises(Exception, match=r"set trainer.devices to a number \(got 'auto'\)"):
        OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
