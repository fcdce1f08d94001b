"""FSDP (``trainer=fsdp``) on GPUs and on CPU, and how to tell that a trained module is sharded.

Lightning's ``FSDPStrategy`` is GPU only. On CPU (gloo) three things stop it, each fixed here
(torch 2.13, pytorch-lightning 2.6.6):

- Lightning refuses ``accelerator="cpu"`` for the ``FSDPStrategy`` class itself (``type(s) is
  FSDPStrategy``); a subclass passes.
- Lightning wraps the model with ``device_id=root_device.index``, None on CPU, and torch's FSDP then
  looks for an accelerator ("FSDP needs a non-CPU accelerator device"): we pass the CPU device.
- Lightning gathers the full state dict with ``offload_to_cpu=True``, which for tensors already on
  the CPU frees what FSDP's post-state-dict hook then clones (SIGSEGV): on CPU we gather with
  ``offload_to_cpu=False`` (rank 0 gets every key at full shape, the other ranks ``{}``).

On GPUs the strategy is Lightning's, unchanged. (A module that wraps itself in ``configure_model``
goes through Lightning's ``model_sharded_context``, still GPU only; our students do not.)
"""
from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.strategies import FSDPStrategy
from pytorch_lightning.strategies.strategy import Strategy
from torch.nn import Module
from torch.optim import Optimizer


class FSDPOnAnyDevice(FSDPStrategy):
    """Lightning's FSDP strategy, which also runs on CPU processes (gloo)."""

    def _setup_model(self, model: Module) -> Module:
        if self.root_device.type != "cpu":
            return super()._setup_model(model)
        from lightning_fabric.strategies.fsdp import _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel

        wrapped = FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                           mixed_precision=self.mixed_precision_config,
                                           sharding_strategy=self.sharding_strategy, device_id=self.root_device,
                                           **self.kwargs)
        _setup_activation_checkpointing(wrapped, self._activation_checkpointing_kwargs)
        return wrapped

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if not self._gathers_in_place():
            return super().lightning_module_state_dict()
        with self._full_state_in_place():
            return self.model.state_dict()

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, torch.Tensor]:
        if not self._gathers_in_place():
            return super().optimizer_state(optimizer)
        from torch.distributed.fsdp import FullyShardedDataParallel, OptimStateKeyType

        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps the real one
        with self._full_state_in_place():
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)
        if self.global_rank == 0:  # the standard layout (keyed by parameter id), as Lightning saves it
            state = FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
        return state

    def _gathers_in_place(self) -> bool:
        return self.root_device.type == "cpu" and self._state_dict_type == "full"

    def _full_state_in_place(self):
        """The full (unsharded) state on rank 0, left where it is: on CPU, "offloading" it to the
        CPU frees the tensors FSDP is about to clone."""
        from torch.distributed.fsdp import (
            FullOptimStateDictConfig,
            FullStateDictConfig,
            FullyShardedDataParallel,
            StateDictType,
        )

        return FullyShardedDataParallel.state_dict_type(
            self.model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=False, rank0_only=True),
            FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True))


def shards_parameters(strategy: Strategy) -> bool:
    """Whether each rank holds only a shard of the trained module's parameters (FSDP). Such a module
    cannot predict on one rank alone: its forward pass is a collective. (DeepSpeed's stage 2 shards
    gradients and optimizer state only; stage 3 is refused by the config check.)"""
    return isinstance(strategy, FSDPStrategy)
