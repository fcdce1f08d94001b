"""Ranks in a multi-process run: who labels which rows and who writes artifacts.

Two ways a run becomes multi-process:

- **launched**: an external launcher starts every process (``torchrun``, ``srun``, or the submitit
  launchers ``hydra/launcher=slurm|local`` with one task per device). Each runs the whole pipeline
  from the start, so the process group is made here, before teaching: teachers label one shard
  each, rank 0 gathers and writes, and Lightning's DDP later reuses the same group.
- **Lightning's relaunch**: one ``w2s`` with ``trainer.devices=N``. Lightning starts the other
  ranks at the first ``fit``; they rerun the script, find every earlier stage already written by
  rank 0, and join training. Labelling then runs on rank 0 alone.

In both, only rank 0 writes artifacts and reports.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import torch
import torch.distributed as dist

# (rank, number of processes) as each launcher that starts every process names them, first match wins
LAUNCHERS = (("RANK", "WORLD_SIZE"),                                 # torchrun
             ("SLURM_PROCID", "SLURM_NTASKS"),                       # srun, submitit on SLURM
             ("SUBMITIT_LOCAL_GLOBALID", "SUBMITIT_LOCAL_NTASKS"))   # submitit's local executor


def _launcher() -> tuple[str, str] | None:
    for rank_name, size_name in LAUNCHERS:
        if os.environ.get(rank_name) is not None and int(os.environ.get(size_name) or 1) > 1:
            return rank_name, size_name
    return None


def launched() -> bool:
    """True when an external launcher started this process as one of several."""
    return _launcher() is not None


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    names = _launcher() or ("RANK", "LOCAL_RANK")  # LOCAL_RANK: a child Lightning started
    for name in names:
        if os.environ.get(name) is not None:
            return int(os.environ[name])
    return 0


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    found = _launcher()
    return int(os.environ[found[1]] if found else os.environ.get("WORLD_SIZE") or 1)


def is_main() -> bool:
    return rank() == 0


def init_process_group() -> bool:
    """Join the launcher's process group (once). CPU objects travel over gloo and CUDA tensors over
    NCCL, so Lightning's DDP can train in the same group. Returns whether a group exists."""
    if not launched():
        return dist.is_available() and dist.is_initialized()
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ and "SUBMITIT_LOCAL_JOB_ID" in os.environ:
            os.environ["MASTER_ADDR"] = "127.0.0.1"  # one machine; a port per job (its id is a pid)
            os.environ.setdefault("MASTER_PORT", str(15000 + int(os.environ["SUBMITIT_LOCAL_JOB_ID"]) % 10000))
        if "MASTER_ADDR" not in os.environ:  # srun gives no rendezvous address; Lightning knows how
            from lightning_fabric.plugins.environments import SLURMEnvironment

            slurm = SLURMEnvironment()
            os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = slurm.main_address, str(slurm.main_port)
        os.environ.setdefault("RANK", str(rank()))
        os.environ.setdefault("WORLD_SIZE", str(world_size()))
        local = os.environ.get("SLURM_LOCALID") or os.environ.get("SUBMITIT_LOCAL_LOCALID") or "0"
        os.environ.setdefault("LOCAL_RANK", local)
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return True


def grouped() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@functools.cache
def _objects():
    """A gloo group for Python objects, whatever backend the training group uses."""
    return dist.new_group(backend="gloo")


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (unchanged without a group)."""
    if not grouped():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_objects())
    return box[0]


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0; None elsewhere."""
    if not grouped():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0, group=_objects())
    return out


def release_lightning_ranks() -> None:
    """After a multirun job that Lightning ran on several processes: its child ranks have exited,
    so drop the group and the variables Lightning left, and the next job's ``fit`` starts new ones."""
    if launched():
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _objects.cache_clear()
    for name in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(name, None)


def transformer_blocks():
    """An FSDP auto-wrap policy for any Hugging Face model: one FSDP unit per module whose class
    the model names in ``_no_split_modules`` (its transformer blocks and embeddings), as
    accelerate does. So a block's parameters are gathered just before it runs and freed after,
    and the largest unit is one block, not the whole student. ``trainer=fsdp`` uses it."""
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    class TransformerBlocks(ModuleWrapPolicy):
        def __init__(self) -> None:
            super().__init__(())  # the classes are the model's: found when FSDP wraps it

        def _run_policy(self, root_module, ignored_modules, root_kwargs):
            names = {n for m in root_module.modules() for n in getattr(m, "_no_split_modules", None) or ()}
            self._module_classes = {type(m) for m in root_module.modules() if type(m).__name__ in names}
            self._module_classes_str = str(self._module_classes)
            return super()._run_policy(root_module, ignored_modules, root_kwargs)

    return TransformerBlocks()
