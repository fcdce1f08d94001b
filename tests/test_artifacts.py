import json

import pandas as pd
import pytest

from weaks2strong.artifacts import Store, stable_hash, write_table


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
