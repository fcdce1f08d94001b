"""Cheap seeds: split-independent teachers label an example once, whatever split seed it lands in."""
import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from weaks2strong.pipeline.classification.teach import is_split_independent, teach
from weaks2strong.runtime.artifacts import Store
from weaks2strong.runtime.example_cache import ExampleCache, example_hashes
from weaks2strong.tasks import load_task
from weaks2strong.teachers.lexicon import Vader
from weaks2strong.teachers.prompted import PromptedLM

SIZES = {"weak_train": 60, "val": 40, "w2s_train": 100, "test": 40}


def _task(mirror, seed):
    return load_task("sst2", sizes=SIZES, mirror=str(mirror), split_seed=seed, pool_size=300).without_test()


def test_fill_computes_only_rows_it_has_not_seen(tmp_path):
    rows = pd.DataFrame({"example_id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": [0, 1, 0]})
    calls = []

    def compute(df):
        calls.append(list(df["text"]))
        return np.stack([np.arange(2.0) + len(t) + ord(t[0]) for t in df["text"]])

    cache = ExampleCache(tmp_path, "ns", 2)
    first, n = cache.fill(rows, compute)
    assert n == 3 and calls == [["x", "y", "z"]]
    # the same texts under other ids and labels, one new text, one repeated: only "w" is computed
    more = pd.DataFrame({"example_id": ["q", "r", "s", "t"], "text": ["z", "w", "x", "w"], "label": [1, 1, 1, 0]})
    again, n = ExampleCache(tmp_path, "ns", 2).fill(more, compute)  # a new process: reads the shards
    assert n == 1 and calls[-1] == ["w"]
    np.testing.assert_array_equal(again[[0, 2]], first[[2, 0]])
    np.testing.assert_array_equal(again[1], again[3])
    assert len(set(example_hashes(more))) == 3


def test_content_hash_ignores_id_and_label_but_not_a_text_pair():
    a = pd.DataFrame({"example_id": ["1"], "text": ["q"], "text_pair": ["p"], "label": [0]})
    b = pd.DataFrame({"example_id": ["2"], "text": ["q"], "text_pair": ["p"], "label": [1]})
    c = pd.DataFrame({"example_id": ["1"], "text": ["q"], "text_pair": ["other"], "label": [0]})
    assert example_hashes(a) == example_hashes(b) != example_hashes(c)


def test_which_teachers_are_split_independent():
    assert is_split_independent(Vader())
    assert is_split_independent(PromptedLM("tiny-llama"))
    assert not is_split_independent(PromptedLM("tiny-llama", shots=2))  # its shots come from weak_train
    from weaks2strong.teachers.classic import TfidfLogReg

    assert not is_split_independent(TfidfLogReg())


def test_a_second_split_seed_labels_only_examples_the_first_did_not_see(mirror, tmp_path):
    teachers = OmegaConf.create({"vader": {"_target_": "weaks2strong.teachers.lexicon.Vader"},
                                 "tfidf_lr": {"_target_": "weaks2strong.teachers.classic.TfidfLogReg"}})
    store = Store(tmp_path)
    first, second = _task(mirror, 0), _task(mirror, 1)
    out0 = teach(first, teachers, store)
    out1 = teach(second, teachers, store)

    def dev_rows(task):
        return pd.concat([task.split(s) for s in ("w2s_train", "val")], ignore_index=True)

    seen = set(example_hashes(dev_rows(first)))
    new = [h for h in example_hashes(dev_rows(second)) if h not in seen]
    assert 0 < len(new) < len(dev_rows(second))  # one pool of 300: the seeds share examples
    timing = [json.loads((out[name].path / "timing.json").read_text()) for out in (out0, out1) for name in teachers]
    vader0, tfidf0, vader1, tfidf1 = timing
    assert vader0["labelled"] == len(dev_rows(first)) and vader0["from_example_cache"] == 0
    assert vader1["labelled"] == len(new)  # counted: the new examples only
    assert vader1["from_example_cache"] == len(dev_rows(second)) - len(new)
    assert tfidf1["labelled"] == len(dev_rows(second))  # a trained teacher is keyed by its split
    # identical to a fresh labelling, example by example
    fresh = Vader()
    fresh.fit(second)
    for split in ("w2s_train", "val"):
        cached = pd.read_parquet(out1["vader"].path / "labels.parquet").query("split == @split")
        np.testing.assert_array_equal(cached[["p_0", "p_1"]].to_numpy(), fresh.predict_proba(second, split))


def test_pool_size_cuts_the_pool_once_for_every_split_seed(mirror):
    a, b = _task(mirror, 0), _task(mirror, 1)
    pool = set().union(*(set(t.split(s)["example_id"]) for t in (a, b) for s in ("weak_train", "val", "w2s_train")))
    assert len(pool) <= 300  # both seeds draw from the same 300 train rows
    assert set(a.split("w2s_train")["example_id"]) != set(b.split("w2s_train")["example_id"])
    with pytest.raises(Exception, match="task.pool_size must be positive"):
        load_task("sst2", sizes=SIZES, mirror=str(mirror), pool_size=0)
