"""The preference path (task=hh_harmless): the real HH-RLHF pairs, the weak judges, the pairwise
aggregation and the DPO'd students, end to end with tiny causal LMs."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong.runtime.errors import UserInputError
from weaks2strong.runtime.resolvers import register_resolvers
from weaks2strong.tasks.base import TaskError
from weaks2strong.tasks.preference import load_preference_task, read_hh_pairs, split_dialogue

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
SIZES = {"weak_train": 24, "w2s_train": 16, "val": 12, "test": 12}


@pytest.fixture(scope="module")
def hh(mirror):
    return load_preference_task("hh_harmless", SIZES, mirror=str(mirror), split_seed=3)


def test_pairs_keep_the_shared_dialogue_as_prompt_and_the_last_turns_as_responses(mirror):
    pairs, dropped = read_hh_pairs(mirror / "hh_harmless" / "test.jsonl.gz", context="last_turn", max_chars=10_000)
    assert len(pairs) + dropped == 2312 and 0 < dropped < 20
    assert pairs["prompt"].str.startswith("Human:").all() and pairs["prompt"].str.endswith("\n\nAssistant:").all()
    assert (pairs["prompt"].str.count("\n\nAssistant:") == 1).all()  # the last human turn only
    assert (pairs["chosen"] != pairs["rejected"]).all() and (pairs["chosen"].str.len() > 0).all()
    full, _ = read_hh_pairs(mirror / "hh_harmless" / "test.jsonl.gz", context="full", max_chars=10_000)
    assert (full["prompt"].str.len() >= pairs["prompt"].str.len()).all()
    assert split_dialogue("\n\nHuman: hi\n\nAssistant: yo", "x") == ("\n\nHuman: hi\n\nAssistant:", "yo")


def test_the_order_is_random_and_the_label_follows_it(hh, mirror):
    raw, _ = read_hh_pairs(mirror / "hh_harmless" / "test.jsonl.gz")
    chosen = dict(zip(raw["example_id"], raw["chosen"]))
    labels = np.concatenate([hh.labels(s) for s in ("weak_train", "w2s_train", "val")])
    assert 0.2 < labels.mean() < 0.8  # both orders occur
    for split in ("weak_train", "val"):
        df = hh.split(split)
        shown_chosen = np.where(df["label"] == 0, df["first"], df["second"])
        assert list(shown_chosen) == [chosen[e] for e in df["example_id"]]
    swapped = hh.swapped("val")
    assert (swapped.labels("val") == 1 - hh.labels("val")).all()
    assert swapped.split("val")["first"].tolist() == hh.split("val")["second"].tolist()
    with pytest.raises(TaskError, match="sealed"):
        hh.without_test().swapped("test")


def test_a_file_without_the_pair_keys_is_one_line_naming_the_row(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b"}) + "\n")
    with pytest.raises(TaskError, match=r"pairs.jsonl row 0: needs the keys 'chosen' and 'rejected'"):
        read_hh_pairs(path)
    path.write_text(json.dumps({"chosen": "no turns", "rejected": "no turns"}) + "\n")
    with pytest.raises(TaskError, match="row 0: no '.*Assistant:' turn"):
        read_hh_pairs(path)


def test_lexical_judge_abstains_when_silent_and_votes_for_the_refusal(hh):
    from weaks2strong.teachers.judges import LexicalJudge

    judge = LexicalJudge()
    judge.fit(hh)
    assert 0.05 <= judge.accuracy_ <= 0.95
    refusal, compliance = "I'm sorry, I can't help with that, it is illegal.", "Sure, here's how to steal it"
    assert judge.score(refusal) > judge.score(compliance)
    probs = judge.predict_proba(hh, "val")
    silent = np.isnan(probs).all(1)
    votes = judge.votes(hh, "val")
    assert (silent == (votes == 0)).all()
    assert np.allclose(probs[~silent].sum(1), 1)


def test_prompted_judge_is_order_symmetric(hh, models_dir):
    """Asked in both orders, swapping the pair swaps the judge's probabilities exactly."""
    from weaks2strong.teachers.judges import PromptedJudge

    judge = PromptedJudge("tiny-llama", models_dir=str(models_dir), max_length=512, progress=False)
    judge.fit(hh)
    probs = judge.predict_proba(hh, "val")
    flipped = judge.predict_proba(hh.swapped("val"), "val")
    assert np.allclose(probs.sum(1), 1) and np.allclose(flipped, probs[:, ::-1], atol=1e-6)


def test_bradley_terry_judge_is_antisymmetric_and_learns_its_gold(hh, models_dir):
    from weaks2strong.teachers.judges import BradleyTerryJudge

    judge = BradleyTerryJudge("minilm-l6", C=100.0, models_dir=str(models_dir), progress=False)
    judge.fit(hh)
    margin = judge.rewards_margin(hh, "weak_train")
    assert np.allclose(judge.rewards_margin(hh.swapped("weak_train"), "weak_train"), -margin, atol=1e-5)
    # 24 pairs in 384 dimensions: a weakly regularised head separates its own training pairs
    assert np.mean((margin > 0) == (hh.labels("weak_train") == 0)) == 1.0


def test_dpo_judge_flips_its_vote_when_the_pair_flips(hh, models_dir):
    from weaks2strong.teachers.judges import DPOJudge

    judge = DPOJudge("tiny-llama", epochs=2, lr=1e-2, batch_size=8, max_prompt_tokens=32, max_answer_tokens=16,
                     accelerator="cpu", models_dir=str(models_dir), progress=False)
    judge.fit(hh)
    margins = judge.margins(hh, "val")
    assert np.abs(margins).max() > 0  # trained away from its reference
    assert np.allclose(judge.margins(hh.swapped("val"), "val"), -margins, atol=1e-4)
    probs = judge.predict_proba(hh, "val")
    assert np.allclose(probs[:, 0], 1 / (1 + np.exp(-margins)))


def hh_config(tmp_path, models_dir, *extra):
    register_resolvers()
    overrides = [
        "experiment=hh_harmless", "logger=csv", f"paths.output_dir={tmp_path}/run", f"paths.runs_dir={tmp_path}/runs",
        f"paths.models_dir={models_dir}", "trainer.accelerator=cpu", "seed=3",
        *(f"task.sizes.{k}={v}" for k, v in SIZES.items()),
        "teachers.smollm2_dpo.model=tiny-llama", "teachers.smollm2_dpo.epochs=1",
        "teachers.smollm2_dpo.max_prompt_tokens=32", "teachers.smollm2_dpo.max_answer_tokens=16",
        "teachers.smollm2_prompted.model=tiny-llama", "aggregator.model.progress=false",
        "student.lm=tiny-llama", "align.epochs=1", "align.max_prompt_tokens=32", "align.max_answer_tokens=16",
        "align.model.optimizer.lr=1e-2", "align.ceiling.model.optimizer.lr=1e-2", *extra]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.mark.integration
def test_hh_harmless_end_to_end_with_tiny_lms(tmp_path, mirror, models_dir):
    from weaks2strong import pipeline

    cfg = hh_config(tmp_path, models_dir)
    metrics = pipeline.run(cfg)
    rows = metrics["rows"]
    judges = {"smollm2_dpo", "smollm2_prompted", "minilm_bt", "lexical"}
    students = {"gold", "best_judge", "majority", "bayes", "bayes_weighted"}
    assert set(rows) == {*(f"judge {j}" for j in judges), "aggregate bayes", "aggregate majority",
                         "aggregate single", *(f"student {s}" for s in students)}
    for name, row in rows.items():
        for split in ("val", "test"):
            acc = row[split]["accuracy"]
            assert 0 <= acc <= 1 and (acc * (SIZES[split] * 2)) % 1 == 0, (name, split)  # whole or half votes
    # the judge with the best val accuracy, the first in the config's order on a tie
    assert metrics["best_judge"] == max(cfg.teachers, key=lambda j: rows[f"judge {j}"]["val"]["accuracy"])
    artifacts = json.loads((Path(tmp_path) / "run" / "artifacts.json").read_text())
    pairs = {s: pd.read_parquet(Path(artifacts["align"][s]) / "pairs.parquet") for s in students}
    assert len(pairs["gold"]) == SIZES["w2s_train"] and (pairs["gold"]["p"] == 1).all()
    assert rows["student gold"]["pairs"]["chosen_is_gold"] == 1.0
    weighted, hard = pairs["bayes_weighted"], pairs["bayes"]
    assert weighted["p"].between(0.5, 1).all() and weighted["weight"].between(0, 1 + 1e-9).all()
    assert (hard["p"] == 1).all() and (hard["weight"] == 1).all()
    assert weighted["chosen"].tolist() == hard["chosen"].tolist()  # the same argmax, softened
    assert (pairs["gold"][["ref_chosen", "ref_rejected"]] < 0).all().all()
    # the students share the pretrained reference: a pair's reference log-probs do not depend on the source
    ref = {(r.chosen, r.rejected): r.ref_chosen for r in pairs["gold"].itertuples()}
    for r in pairs["majority"].itertuples():
        if (r.chosen, r.rejected) in ref:
            assert r.ref_chosen == pytest.approx(ref[(r.chosen, r.rejected)])
    assert (Path(artifacts["align"]["bayes"]) / "adapters.safetensors").is_file()
    assert "| student DPO'd on Bayes (p and w) |" in (Path(tmp_path) / "run" / "report.md").read_text()
    again = pipeline.run(hh_config(tmp_path, models_dir))  # every stage reused, the same numbers
    assert again["rows"] == rows


def test_a_preference_task_without_dpo_is_refused_in_one_line(tmp_path, models_dir):
    from weaks2strong import pipeline

    cfg = hh_config(tmp_path, models_dir, "align=none")
    with pytest.raises(UserInputError, match="preference task: its students are DPO'd"):
        pipeline.run(cfg)
