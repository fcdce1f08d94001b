"""Who is which rank, from the environment each launcher sets; sharding and unsharding rows."""
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from weaks2strong.pipeline.classification.teach import _unshard
from weaks2strong.runtime import distributed, launch

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "NODE_RANK",
                    "SUBMITIT_LOCAL_NTASKS", "SUBMITIT_LOCAL_GLOBALID")


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variables, launched, rank, world", [
    ({}, False, 0, 1),                                                     # a plain run
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, True, 3, 4),     # torchrun
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}, True, 5, 8),              # srun / submitit, one task per GPU
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, False, 0, 1),             # a one-task SLURM job
    ({"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1"}, True, 1, 2),  # hydra/launcher=submitit_local
    ({"SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_GLOBALID": "0"}, False, 0, 1),
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2", "NODE_RANK": "0"}, False, 1, 2),  # a child Lightning started
])
def test_ranks_from_each_launchers_environment(env, variables, launched, rank, world):
    for name, value in variables.items():
        env.setenv(name, value)
    assert (distributed.launched(), distributed.rank(), distributed.world_size()) == (launched, rank, world)
    assert distributed.is_main() == (rank == 0)


@pytest.mark.parametrize("variables, subdir, name", [
    ({}, ".hydra", "cli"),
    ({"SLURM_NTASKS": "2", "SLURM_PROCID": "0"}, ".hydra", "cli"),
    ({"SLURM_NTASKS": "2", "SLURM_PROCID": "1"}, None, "rank1"),
    ({"SUBMITIT_LOCAL_NTASKS": "4", "SUBMITIT_LOCAL_GLOBALID": "3"}, None, "rank3"),
])
def test_each_process_resolves_where_hydra_writes_its_config_and_log(env, variables, subdir, name):
    """The overrides every ``w2s`` adds are resolved by each process (submitit's tasks get them from
    the submitting command): ranks > 0 write no ``.hydra/`` and log to ``rank<r>.log``."""
    from hydra.core.utils import JobRuntime

    for key, value in variables.items():
        env.setenv(key, value)
    env.setattr(sys, "argv", ["w2s"])
    JobRuntime.instance().set("name", "cli")
    launch.quiet_other_ranks()
    cfg = OmegaConf.from_dotlist(sys.argv[1:])
    assert (cfg.hydra.output_subdir, cfg.hydra.job.name) == (subdir, name)
    assert ("run" in cfg.hydra) == (subdir is None)  # torchrun/srun ranks > 0 without a run dir: runs/.ranks


def test_the_command_lines_own_keys_win(env):
    """Lightning's relaunch sets the job name and output subdir itself (train_ddp_process_<r>.log)."""
    given = ["w2s", "hydra.run.dir=/x", "hydra.job.name=train_ddp_process_1", "hydra.output_subdir=null"]
    env.setenv("LOCAL_RANK", "1")
    env.setattr(sys, "argv", list(given))
    launch.quiet_other_ranks()
    assert sys.argv == given


def test_without_a_group_collectives_are_the_identity(env):
    assert distributed.broadcast({"a": 1}) == {"a": 1} and distributed.gather(5) == [5]
    assert not distributed.init_process_group()  # nothing launched: no group is made


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shards_cover_every_row_once_and_unshard_restores_the_order(small_sst2, world):
    shards = [small_sst2.shard(r, world) for r in range(world)]
    assert all(len(s.splits["weak_train"]) == 200 for s in shards)  # every rank fits on all of weak_train
    ids = [s.splits["test"]["example_id"].to_numpy()[:, None].astype(object) for s in shards]
    probs = [np.stack([np.arange(len(s.splits["test"]))] * 2, 1).astype(float) for s in shards]
    assert sum(len(i) for i in ids) == 40
    order = np.concatenate([np.flatnonzero(np.arange(40) % world == r) for r in range(world)])
    restored = _unshard(probs)
    expected = np.empty((40, 2))
    expected[order] = np.concatenate(probs)
    np.testing.assert_array_equal(restored, expected)
    assert list(np.concatenate(ids)[np.argsort(order)].ravel()) == list(small_sst2.splits["test"]["example_id"])
