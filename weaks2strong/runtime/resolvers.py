"""OmegaConf resolvers the configs use: ``${w2s.root:}``, ``${w2s.sweep:group|job,default}`` and
``${w2s.slurm_tasks:devices}`` / ``${w2s.slurm_gpus:accelerator,devices}`` (the SLURM launcher's)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("w2s.root"):
        # the checkout holding conf/, so data/ and runs/ land beside it wherever w2s is called from
        OmegaConf.register_new_resolver("w2s.root", lambda: str(Path(CONFIG_DIR).parent))
    if not OmegaConf.has_resolver("w2s.sweep"):
        OmegaConf.register_new_resolver("w2s.sweep", sweep_label)
    if not OmegaConf.has_resolver("w2s.slurm_tasks"):
        OmegaConf.register_new_resolver("w2s.slurm_tasks", slurm_tasks)
        OmegaConf.register_new_resolver("w2s.slurm_gpus", slurm_gpus)


def slurm_tasks(devices) -> int:
    """One SLURM task per device, as Lightning's SLURM environment expects; the count must be a number."""
    try:
        return int(devices)
    except (TypeError, ValueError):
        raise ValueError(f"hydra/launcher=slurm starts one task per device: set trainer.devices to a number "
                         f"(got {devices!r})") from None


def slurm_gpus(accelerator: str, devices) -> int | None:
    """GPUs to ask for per node: none when the trainer runs on CPU (a CPU partition has no GPU to
    give, and asking for one leaves the job pending forever), else one per task."""
    return None if str(accelerator) == "cpu" else slurm_tasks(devices)


def sweep_label(part: str, default: str = "") -> str:
    """For W&B: in a multirun, ``group`` is the sweep (its folder name) and ``job`` names the job
    (number and overrides), so each job is its own run and a sweep's runs sit in one group. In a
    single run both give ``default``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return default
    hydra_cfg = HydraConfig.get()
    if part == "group":
        return f"sweep-{Path(hydra_cfg.sweep.dir).name}"
    return f"{hydra_cfg.job.num}:{hydra_cfg.job.override_dirname}"[:128]
