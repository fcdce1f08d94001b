import json

import pandas as pd
import pytest

from weaks2strong.runtime.artifacts import Store, stable_hash, write_table


def test_hash_is_stable_and_order_free():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_create_publishes_atomically_and_find_trusts_only_manifests(tmp_path):
    store = Store(tmp_path)
    with store.create("teach", "k1", {"task": "t"}, {"x": 1}) as scratch:
        write_table(scratch / "labels.parquet", pd.DataFrame({"a": [1.0, 2.0]}))
        assert store.find("teach", "k1") is None  # not visible until the block ends
    found = store.find("teach", "k1")
    assert found.table("labels")["a"].tolist() == [1.0, 2.0]
    assert found.manifest["config"] == {"x": 1} and "torch" in found.manifest["versions"]


def test_a_failed_stage_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.create("teach", "k2", {}, {}) as scratch:
            write_table(scratch / "labels.parquet", pd.DataFrame({"a": [1]}))
            raise RuntimeError("killed")
    assert store.find("teach", "k2") is None
    assert list((tmp_path / "teach").iterdir()) == []


def test_a_folder_whose_manifest_names_another_key_is_not_trusted(tmp_path):
    store = Store(tmp_path)
    (tmp_path / "teach" / "k3").mkdir(parents=True)
    (tmp_path / "teach" / "k3" / "manifest.json").write_text(json.dumps({"key": "other", "schema": 1}))
    assert store.find("teach", "k3") is None
    (tmp_path / "teach" / "k3" / "manifest.json").write_text("{truncated")
    assert store.find("teach", "k3") is None


def _compute_once(root, log_path, delay):
    """One 'job': claim the stage, compute it (slowly) unless someone already has, and say which."""
    import time as _time

    store = Store(root)
    with store.claim("teach", "k") as found:
        if found is None:
            _time.sleep(delay)
            with store.create("teach", "k", {}, {}) as tmp:
                (tmp / "labels.json").write_text("{}")
            outcome = "computed"
        else:
            outcome = "reused"
    with open(log_path, "a") as fh:
        fh.write(outcome + "\n")


def test_concurrent_jobs_compute_a_shared_stage_once(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    jobs = [ctx.Process(target=_compute_once, args=(tmp_path / "store", tmp_path / "log", 1.0)) for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert sorted((tmp_path / "log").read_text().split()) == ["computed", "reused", "reused"]


def test_a_late_writer_keeps_the_published_artifact(tmp_path):
    store = Store(tmp_path)
    with store.create("teach", "k", {}, {"who": "first"}) as tmp:
        (tmp / "x.json").write_text("1")
    with store.create("teach", "k", {}, {"who": "second"}) as tmp:  # a concurrent duplicate finishing later
        (tmp / "x.json").write_text("2")
    found = store.find("teach", "k")
    assert found.manifest["config"] == {"who": "first"} and (found.path / "x.json").read_text() == "1"
    assert [p.name for p in (tmp_path / "teach").iterdir()] == ["k"]  # the duplicate's scratch is gone


def test_weights_with_a_tied_head_are_written_and_load_back(tmp_path):
    """safetensors refuses shared tensors; Gemma's head is its token table."""
    import torch
    from safetensors.torch import load_file

    from weaks2strong.runtime.artifacts import write_weights

    def tied():
        torch.manual_seed(0)
        model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(7, 3), "head": torch.nn.Linear(3, 7, bias=False)})
        model["head"].weight = model["embed"].weight
        return model

    model = tied()
    with torch.no_grad():
        model["embed"].weight.add_(1.0)
    write_weights(tmp_path / "model.safetensors", model.state_dict())
    fresh = tied()
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    torch.testing.assert_close(fresh["head"].weight, model["embed"].weight)
    assert fresh["head"].weight.data_ptr() == fresh["embed"].weight.data_ptr()  # still one table
    assert not list(tmp_path.glob("*.tmp*"))
