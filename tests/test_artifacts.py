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


def _flip(path, offset=None):
    """Flip one bit of one byte of a file in place (the middle one unless ``offset``)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _three_files(store, key):
    import torch

    from weaks2strong.runtime.artifacts import write_json, write_weights

    with store.create("teach", key, {}, {}) as tmp:
        write_table(tmp / "labels.parquet", pd.DataFrame({"a": [1.0, 2.0, 3.0]}))
        write_json(tmp / "timing.json", {"seconds": 1.5})
        write_weights(tmp / "sub" / "model.safetensors", {"w": torch.arange(64.0)})


@pytest.mark.parametrize("name", ["labels.parquet", "timing.json", "sub/model.safetensors", "manifest.json"])
def test_a_flipped_byte_makes_find_warn_once_and_create_replace_the_folder(tmp_path, caplog, name):
    from weaks2strong.runtime.artifacts import check

    store = Store(tmp_path)
    _three_files(store, "k")
    found = store.find("teach", "k")
    assert set(found.manifest["files"]) == {"labels.parquet", "timing.json", "sub/model.safetensors"}
    assert check(found.path, "k") == ("ok", "")
    _flip(tmp_path / "teach" / "k" / name)
    with caplog.at_level("WARNING", logger="weaks2strong.runtime.artifacts"):
        assert store.find("teach", "k") is None
        _three_files(store, "k")  # the stage computed again: create replaces the bad folder, quietly
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert str(tmp_path / "teach" / "k" / name) in warning.getMessage()
    assert check(tmp_path / "teach" / "k", "k")[0] == "ok"
    assert store.find("teach", "k").table("labels")["a"].tolist() == [1.0, 2.0, 3.0]
    assert [p.name for p in (tmp_path / "teach").iterdir()] == ["k"]  # nothing left aside


def test_a_truncated_or_missing_file_is_bad_and_an_old_manifest_is_trusted_unverified(tmp_path):
    from weaks2strong.runtime.artifacts import check

    store = Store(tmp_path)
    _three_files(store, "k")
    folder = tmp_path / "teach" / "k"
    (folder / "timing.json").write_text("")
    assert check(folder, "k") == ("bad", f"{folder / 'timing.json'} does not match its checksum in manifest.json")
    (folder / "timing.json").unlink()
    assert check(folder, "k") == ("bad", f"{folder / 'timing.json'} is missing")
    # a manifest from before checksums (no "files", no "self"): reused as before, counted apart
    (tmp_path / "teach" / "old").mkdir()
    (tmp_path / "teach" / "old" / "manifest.json").write_text(json.dumps({"key": "old", "schema": 1}))
    assert check(tmp_path / "teach" / "old", "old")[0] == "unverified"
    assert store.find("teach", "old") is not None


def test_a_table_read_again_after_its_folder_was_replaced_is_the_new_one(tmp_path):
    store = Store(tmp_path)
    with store.create("teach", "k", {}, {}) as tmp:
        write_table(tmp / "labels.parquet", pd.DataFrame({"a": [1.0]}))
    assert store.find("teach", "k").table("labels")["a"].tolist() == [1.0]
    _flip(tmp_path / "teach" / "k" / "labels.parquet", offset=0)
    assert store.find("teach", "k") is None
    with store.create("teach", "k", {}, {}) as tmp:
        write_table(tmp / "labels.parquet", pd.DataFrame({"a": [2.0]}))
    assert store.find("teach", "k").table("labels")["a"].tolist() == [2.0]  # not the copy read before


def test_a_store_with_a_run_dir_records_what_the_run_used(tmp_path):
    from weaks2strong.runtime.artifacts import USED

    with Store(tmp_path / "cache").create("teach", "a", {}, {}) as tmp:  # a store without a run dir records nothing
        (tmp / "x.json").write_text("1")
    store = Store(tmp_path / "cache", run_dir=tmp_path / "run")
    assert store.find("teach", "a") is not None
    with store.create("aggregate", "b", {"t": "a"}, {}) as tmp:
        (tmp / "y.json").write_text("2")
    used = json.loads((tmp_path / "run" / USED).read_text())
    assert used == {"cache": str((tmp_path / "cache").resolve()), "artifacts": ["aggregate/b", "teach/a"]}
    (entry,) = (tmp_path / "cache" / ".runs").glob("*.json")
    assert json.loads(entry.read_text()) == {"run_dir": str((tmp_path / "run").resolve())}
    rerun = Store(tmp_path / "cache", run_dir=tmp_path / "run")  # a rerun in the same folder keeps the record
    assert rerun.find("teach", "a") is not None
    assert json.loads((tmp_path / "run" / USED).read_text())["artifacts"] == ["aggregate/b", "teach/a"]


def test_a_flipped_example_cache_shard_is_skipped_and_computed_again(tmp_path, caplog):
    import numpy as np

    from weaks2strong.runtime import example_cache
    from weaks2strong.runtime.example_cache import ExampleCache

    rows = pd.DataFrame({"example_id": ["a", "b"], "text": ["x", "y"], "label": [0, 1]})
    calls = []

    def compute(df):
        calls.append(len(df))
        return np.ones((len(df), 2))

    ExampleCache(tmp_path, "ns", 2).fill(rows, compute)
    (shard,) = (tmp_path / "examples" / "ns").glob("*.parquet")
    _flip(shard)
    example_cache._READ.clear()  # a new process
    with caplog.at_level("WARNING", logger="weaks2strong.runtime.example_cache"):
        values, computed = ExampleCache(tmp_path, "ns", 2).fill(rows, compute)
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert str(shard) in warning.getMessage()
    assert computed == 2 and calls == [2, 2] and np.all(values == 1)
    assert example_cache.shard_problem(shard) is None  # the same bytes again: the bad shard was overwritten


def test_gc_counts_an_older_run_by_its_artifacts_json_and_keeps_what_those_were_built_from(tmp_path, capsys):
    from weaks2strong.runtime.cache_cli import main

    cache, store = tmp_path / "runs" / ".cache", Store(tmp_path / "runs" / ".cache")
    for stage, key, inputs in (("teach", "t1", {}), ("aggregate", "a1", {"vader": "t1"}), ("teach", "t2", {})):
        with store.create(stage, key, inputs, {}) as scratch:
            (scratch / "x.json").write_text("{}")
    old_run = tmp_path / "runs" / "sst2" / "2026-01-01_00-00-00"  # no artifacts_used.json, not in .runs/
    old_run.mkdir(parents=True)
    (old_run / "artifacts.json").write_text(json.dumps({"aggregate": str(cache / "aggregate" / "a1")}))
    assert main(["gc", "--cache", str(cache), "--delete"]) == 0
    assert "removed teach/t2" in capsys.readouterr().out
    assert sorted(p.parent.name for p in cache.glob("*/*/manifest.json")) == ["a1", "t1"]
