"""``trainer=fsdp``: the config and the wrap policy. FSDP itself does not run on CPU here.

Tried with 2 gloo processes (torchrun) on torch 2.13+cpu and pytorch-lightning 2.6.6:
- ``Trainer(accelerator="cpu", strategy="fsdp")`` (or an ``FSDPStrategy()`` instance) raises
  ``ValueError: The strategy `fsdp` requires a GPU accelerator, but received `accelerator='cpu'`.``
- past that check (a subclass), torch's FSDP raises ``RuntimeError: FSDP needs a non-CPU accelerator
  device, but no accelerator device is detected.`` (Lightning passes ``device_id=None`` on CPU)
- past that too (``device_id=torch.device("cpu")``), training runs sharded, but
  ``strategy.lightning_module_state_dict()`` dies with SIGSEGV in FSDP's full-state-dict hook
  (``_full_post_state_dict_hook`` cloning the unsharded parameters): Lightning gathers with
  ``offload_to_cpu=True``, which on CPU frees what it clones. With ``offload_to_cpu=False`` rank 0
  gets all keys at full shape and the other ranks ``{}``.
So the check that rank 0 saves a full state dict needs 2 GPUs; these tests cover what runs here.
"""
import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_lightning.strategies import FSDPStrategy

from weaks2strong.runtime.distributed import transformer_blocks
from weaks2strong.runtime.resolvers import CONFIG_DIR, register_resolvers


def test_fsdp_config_gathers_a_full_state_dict_and_wraps_each_block():
    register_resolvers()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["trainer=fsdp", "logger=none"])
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "full"
    assert strategy.sharding_strategy.name == "FULL_SHARD" and strategy.kwargs["use_orig_params"]
    assert type(strategy.kwargs["auto_wrap_policy"]).__name__ == "TransformerBlocks"
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


def test_the_wrap_policy_makes_one_unit_per_transformer_block(models_dir):
    from weaks2strong.models import EncoderClassifier
    from weaks2strong.zoo import resolve_model

    net = EncoderClassifier(resolve_model("tiny-bert", models_dir), num_classes=2)
    units = transformer_blocks()._run_policy(net, set(), {"sharding_strategy": "FULL_SHARD"})
    names = sorted(type(m).__name__ for m in units)
    assert names == ["BertEmbeddings"] + ["BertLayer"] * net.encoder.config.num_hidden_layers
    assert all(kwargs == {"sharding_strategy": "FULL_SHARD"} for kwargs in units.values())


def test_lightning_refuses_fsdp_on_cpu():
    """If this starts passing a CPU trainer, write the 2-process state-dict test on CPU."""
    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        pl.Trainer(accelerator="cpu", devices=2, strategy="fsdp", logger=False)
