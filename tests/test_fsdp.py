"""``trainer=fsdp`` run for real on 2 CPU processes (gloo), against one process; ``trainer=deepspeed`` refused.

FSDP: Lightning's FSDPStrategy is GPU only, and three things stop it on CPU (torch 2.13+cpu,
pytorch-lightning 2.6.6): Lightning refuses ``accelerator="cpu"``; torch's FSDP wants an accelerator
(Lightning passes ``device_id=None`` on CPU); and Lightning's full-state-dict gather
(``offload_to_cpu=True``) dies with SIGSEGV on CPU tensors. ``weaks2strong/runtime/fsdp.py`` gets
past all three, so ``trainer=fsdp trainer.accelerator=cpu trainer.precision=32-true`` trains sharded.
After training, rank 0 gathers the full state dict, saves it and predicts with an unsharded copy
(the sharded module's forward pass is a collective the other ranks would not join).

The 2-rank run (batch 8 each) must give one process's artifacts (batch 16), dropout off:
predictions and the saved weights within 1e-6 (measured: 1.2e-7 and 1.2e-7), and the saved
``model.safetensors``, loaded back in this one process, must predict what the FSDP run did.

DeepSpeed cannot run here: the ``deepspeed`` package is not installed (it needs CUDA to build its
ops; setup.cfg's ``deepspeed`` extra, for GPU machines), and Lightning's DeepSpeedStrategy refuses
any accelerator but CUDA. So ``trainer=deepspeed`` is refused in one line before any stage runs, and
so is ZeRO stage 3 everywhere (its parameters are partitioned, and only FSDP's path gathers them).
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pytorch_lightning.strategies import FSDPStrategy
from safetensors.torch import load_file
from test_distributed import probs, w2s

from weaks2strong.models import predict_proba
from weaks2strong.pipeline.classification.distill import fitted_student
from weaks2strong.pipeline.common.config import build
from weaks2strong.pipeline.common.tables import split_frame
from weaks2strong.runtime.artifacts import Artifact
from weaks2strong.runtime.distributed import transformer_blocks
from weaks2strong.runtime.fsdp import FSDPOnAnyDevice
from weaks2strong.runtime.resolvers import CONFIG_DIR, register_resolvers

TINY = ["debug=fast", "teachers=lexical", "logger=none", "trainer.accelerator=cpu", "trainer.max_epochs=2",
        "student.encoder=tiny-bert", "student.net.dropout=0", "+student.net.encoder_dropout=0"]
FSDP_ON_CPU = ["trainer=fsdp", "trainer.precision=32-true"]  # bf16 on CPU would not match one fp32 process
TOLERANCE = 1e-6  # FSDP vs one process, predictions and weights (measured: 1.2e-7 each)


def compose_config(*overrides: str):
    register_resolvers()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_fsdp_config_gathers_a_full_state_dict_and_wraps_each_block():
    cfg = compose_config("trainer=fsdp", "logger=none")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPOnAnyDevice) and isinstance(strategy, FSDPStrategy)
    assert strategy._state_dict_type == "full"
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


def test_lightning_refuses_its_own_fsdp_on_cpu_but_not_ours():
    """If Lightning's own class starts passing a CPU trainer, FSDPOnAnyDevice's first fix can go."""
    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        pl.Trainer(accelerator="cpu", devices=2, strategy="fsdp", logger=False)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=FSDPOnAnyDevice(), logger=False)
    assert isinstance(trainer.strategy, FSDPOnAnyDevice)


@pytest.mark.integration
def test_fsdp_on_two_gloo_ranks_matches_one_process_and_its_weights_load_in_one(tmp_path):
    single = w2s([sys.executable], tmp_path, "single", "student.data.batch_size=16", common=TINY)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    fsdp = w2s(torchrun, tmp_path, "fsdp", *FSDP_ON_CPU, "trainer.devices=2", "student.data.batch_size=8",
               common=TINY)

    for stage in ("ceiling", "student"):
        a, b = probs(single[stage], "predictions"), probs(fsdp[stage], "predictions")  # w2s_train and val
        assert a.index.equals(b.index)
        np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), atol=TOLERANCE)
        # test, labelled by evaluate on rank 0 alone, with the unsharded copy
        a, b = probs(single["predict_test"][stage], "predictions"), probs(fsdp["predict_test"][stage], "predictions")
        np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), atol=TOLERANCE)
        ours, theirs = load_file(f"{single[stage]}/model.safetensors"), load_file(f"{fsdp[stage]}/model.safetensors")
        assert ours.keys() == theirs.keys()  # the full state dict: every key, at full shape
        for name, tensor in ours.items():
            assert theirs[name].shape == tensor.shape, name
            np.testing.assert_allclose(theirs[name].numpy(), tensor.numpy(), atol=TOLERANCE, err_msg=name)
    # both stages trained, each its own way: far apart next to the tolerance (7e-3 measured)
    a, b = probs(fsdp["ceiling"], "predictions"), probs(fsdp["student"], "predictions")
    assert np.abs(a.to_numpy() - b.to_numpy()).max() > 1e-3
    assert_loads_in_one_process(fsdp, "ceiling", *TINY, *FSDP_ON_CPU, f"paths.runs_dir={tmp_path}/fsdp")


def assert_loads_in_one_process(run: dict, stage: str, *overrides: str) -> None:
    """The saved weights, loaded by the path a reused stage takes (a fresh recipe + the safetensors),
    predict in this one process what the 2-rank run predicted."""
    cfg = compose_config(*overrides)
    task = build(cfg.task, "task", _convert_="all").without_test()
    path = Path(run[stage])
    parts = fitted_student(task, None, Artifact(stage, path.name, path), cfg)
    again = predict_proba(parts.module, parts.predict_loader(task, "val")).double().numpy()
    again = split_frame(task, "val", again).set_index(["split", "example_id"]).sort_index()
    saved = probs(run[stage], "predictions").loc[["val"]]
    assert again.index.equals(saved.index)
    np.testing.assert_allclose(again.to_numpy(), saved.to_numpy(), atol=TOLERANCE)


ON_CPU = ("config key 'trainer.accelerator' is 'cpu', but trainer.strategy=deepspeed_stage_2 runs on CUDA GPUs "
          "only; on CPU processes use trainer=ddp or trainer=fsdp")
NOT_INSTALLED = ("config key 'trainer.strategy' is 'deepspeed_stage_2', which needs the deepspeed package (not "
                 "installed here): on a CUDA machine, .venv/bin/pip install -e .[deepspeed]")


@pytest.mark.parametrize("overrides, line", [(["trainer.accelerator=cpu"], ON_CPU),
                                             (["trainer.accelerator=gpu"], NOT_INSTALLED)])
def test_deepspeed_where_it_cannot_run_is_refused_in_one_line_before_any_stage(tmp_path, overrides, line):
    if "trainer.accelerator=gpu" in overrides and importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    done = subprocess.run([sys.executable, "-m", "weaks2strong.cli", "trainer=deepspeed", *TINY, *overrides,
                           f"paths.runs_dir={tmp_path}/runs", f"hydra.run.dir={tmp_path}/run"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"w2s: error: {line}"]
    assert not (tmp_path / "run").exists() and not list((tmp_path / "runs").glob(".cache/*/*"))


def test_deepspeed_stage_3_is_refused_everywhere():
    """ZeRO-3 partitions the parameters as FSDP does, but only FSDP's rank 0 gathers them to predict."""
    from weaks2strong.runtime.checks import check_command_line

    found = check_command_line(["trainer=deepspeed", "trainer.strategy=deepspeed_stage_3"])
    assert found == ("config key 'trainer.strategy' is 'deepspeed_stage_3': ZeRO stage 3 partitions the parameters, "
                     "and rank 0 predicts alone after training; use trainer=fsdp (or deepspeed_stage_2)")
