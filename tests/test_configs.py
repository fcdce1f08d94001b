"""Every config group option composes, and every ``_target_`` in it names something importable."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf

from weaks2strong.cli import CONFIG_DIR

GROUPS = ["task", "teachers", "aggregator", "student", "trainer", "logger", "experiment", "debug", "hparams_search"]


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
