"""Who is which rank, from the environment each launcher sets; sharding and unsharding rows."""
import numpy as np
import pytest

from weaks2strong import distributed
from weaks2strong.pipeline.teach import _unshard

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "NODE_RANK")


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
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2", "NODE_RANK": "0"}, False, 1, 2),  # a child Lightning started
])
def test_ranks_from_each_launchers_environment(env, variables, launched, rank, world):
    for name, value in variables.items():
        env.setenv(name, value)
    assert (distributed.launched(), distributed.rank(), distributed.world_size()) == (launched, rank, world)
    assert distributed.is_main() == (rank == 0)


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
