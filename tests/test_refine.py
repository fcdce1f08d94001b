"""Refinement: the strong model labels each example in context from weakly labelled demonstrations
(``refine/in_context.py``) and the ``refine`` stage that adds those labels to the run as a teacher."""
import json
import logging

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from test_pipeline import compose_run, stage_messages

from weaks2strong import pipeline
from weaks2strong.refine.in_context import InContextRefiner, match_prior
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.teachers.base import TeacherError
from weaks2strong.teachers.prompted import PromptedLM


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


def noisy_labels(task, split, flip: float, seed: int = 0) -> np.ndarray:
    gold = task.labels(split)
    flipped = np.random.default_rng(seed).random(len(gold)) < flip
    return np.where(flipped, 1 - gold, gold)


@pytest.fixture
def fitted(small_sst2, tiny_lm):
    weak = noisy_labels(small_sst2, "w2s_train", 0.3)
    refiner = InContextRefiner("tiny-llama", shots=4, calibrate="none", models_dir=tiny_lm, progress=False)
    refiner.fit(small_sst2, "w2s_train", weak)
    return refiner, weak


def test_a_refinement_prompt_never_contains_the_example_it_labels(small_sst2, fitted):
    refiner, _ = fitted
    cue = refiner.answer_cue
    for split in ("w2s_train", "val", "test"):
        texts, which = refiner.rendered(small_sst2, split)
        ids = small_sst2.split(split)["example_id"].astype(str)
        for text, prompt, example_id, s in zip(texts, small_sst2.prompts(split), ids, which):
            assert text.endswith(prompt + cue) and text.count(prompt) == 1  # once: as the question, not a demo
            assert example_id not in {demo_id for _, _, demo_id in refiner.demo_sets_[s]}
        if split != "w2s_train":
            assert not which.any()  # rows outside the demonstrations' split all share set A's prefix
    _, which = refiner.rendered(small_sst2, "w2s_train")
    assert which.sum() == 4  # exactly set A's own rows are labelled with set B


def test_the_demonstrations_carry_the_weak_labels_spread_over_the_classes(small_sst2, fitted):
    refiner, weak = fitted
    rows = {example_id: i for i, example_id in enumerate(small_sst2.split("w2s_train")["example_id"].astype(str))}
    first, second = ({demo_id for _, _, demo_id in demos} for demos in refiner.demo_sets_)
    assert len(first) == len(second) == 4 and not first & second
    for demos in refiner.demo_sets_:
        answers = [answer for _, answer, _ in demos]
        assert answers == [small_sst2.verbalizers[weak[rows[demo_id]]] for _, _, demo_id in demos]  # weak, not gold
        assert sorted(answers) == sorted(small_sst2.verbalizers * 2)  # two per class


def test_the_shared_prefix_scores_as_the_full_prompts_do(small_sst2, fitted):
    refiner, _ = fitted
    fast = refiner.predict_proba(small_sst2, "val")
    refiner.reuse_prefix, refiner._kept = False, (None, None)
    plain = refiner.predict_proba(small_sst2, "val")
    assert fast.shape == (40, 2) and np.allclose(fast.sum(1), 1)
    assert np.abs(fast - plain).max() < 1e-4
    assert np.abs(fast - fast.mean(0)).max() > 1e-4  # the example matters, not only the demonstrations


def test_the_refiner_scores_the_same_verbalizer_tokens_as_a_prompted_lm(small_sst2, fitted, tiny_lm):
    refiner, _ = fitted
    texts, _ = refiner.rendered(small_sst2, "val")
    lm = PromptedLM("tiny-llama", max_length=100_000, models_dir=tiny_lm, progress=False, reuse_prefix=False,
                    use_chat_template=False)
    tok, model = lm._load()
    small_sst2.verbalizers = [" " + v.lstrip() for v in small_sst2.verbalizers]
    direct = lm._probs(tok, model, small_sst2, texts[:5], desc=None)
    assert np.abs(refiner.predict_proba(small_sst2, "val")[:5] - direct).max() < 1e-4


def test_match_prior_sets_the_answer_shares_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 2000)
    logodds = 0.8 * (gold - 0.5) + rng.normal(-0.6, 0.5, 2000)  # ranks well, leans to class 0 (flat, as an LM)
    probs = np.stack([1 / (1 + np.exp(logodds)), 1 / (1 + np.exp(-logodds))], axis=1)
    assert (probs.argmax(1) == 0).mean() > 0.8
    scale = match_prior(probs, np.array([0.3, 0.7]))
    adjusted = probs * scale / (probs * scale).sum(1, keepdims=True)
    assert abs((adjusted.argmax(1) == 1).mean() - 0.7) < 0.01
    assert roc_auc_score(gold, adjusted[:, 1]) == pytest.approx(roc_auc_score(gold, probs[:, 1]))


def test_too_few_weak_labels_for_two_demonstration_sets(small_sst2, tiny_lm):
    weak = np.full(len(small_sst2.split("w2s_train")), -1)
    weak[:5] = 1
    refiner = InContextRefiner("tiny-llama", shots=4, balanced=False, models_dir=tiny_lm, progress=False)
    with pytest.raises(TeacherError, match="only 1 weakly labelled rows for 4 demonstrations"):
        refiner.fit(small_sst2, "w2s_train", weak)
    with pytest.raises(TeacherError, match="calibrate='yes' is not one of weak_prior, content_free, none"):
        InContextRefiner("tiny-llama", calibrate="yes")


@pytest.mark.integration
def test_the_refine_stage_adds_the_refined_teacher_and_is_reused(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="weaks2strong.pipeline")
    metrics = pipeline.run(compose_run(tmp_path, "refined", "refine=in_context", "aggregator=single",
                                       "aggregator.model.teacher=refined"))
    assert set(metrics["teachers"]) == {"vader", "tfidf_lr", "smollm2", "refined"}
    refined = metrics["teachers"]["refined"]
    assert refined["test"]["coverage"] == 1.0 and refined["val"]["accuracy"] > 0.5  # real Gemma, in context
    # the single-teacher aggregate is the refined labels themselves: the student was fed them
    assert metrics["aggregate"]["w2s_train"] == refined["w2s_train"]
    artifacts = json.loads((tmp_path / "refined" / "artifacts.json").read_text())
    demos = json.loads((tmp_path / artifacts["teach"]["refined"] / "demos.json").read_text())
    # refine.weak_labels=best_on_val: the teacher (refined aside: it did not exist yet) best on val, the first on a tie
    before = [name for name in metrics["teachers"] if name != "refined"]
    assert demos["weak_labels"] == max(before, key=lambda name: metrics["teachers"][name]["val"]["accuracy"])
    assert len(demos["sets"]) == 2 and all(len(s) == 8 for s in demos["sets"])
    # a later process (evaluate after a reused refine) rebuilds the refiner from the artifact alone
    # and labels as the stage did, without scoring w2s_train again for the class scale
    from weaks2strong.pipeline.classification.refine import fitted_refiner
    from weaks2strong.pipeline.common import stage
    from weaks2strong.pipeline.common.config import build
    from weaks2strong.pipeline.common.tables import split_probs
    from weaks2strong.runtime.artifacts import Store

    cfg = compose_run(tmp_path, "unused", "refine=in_context")
    store = Store(cfg.paths.cache_dir)
    task = build(cfg.task, "task", _convert_="all").without_test()
    refine_artifact = store.find("refine", artifacts["teach"]["refined"].rstrip("/").split("/")[-1])
    stage.forget_fitted()
    rebuilt = fitted_refiner(task, {n: store.find("teach", p.rstrip("/").split("/")[-1])
                                    for n, p in artifacts["teach"].items() if n != "refined"},
                             cfg.refine, refine_artifact.key, demos)
    assert rebuilt._kept == (None, None)  # w2s_train was not scored
    assert np.abs(rebuilt.predict_proba(task, "val") - split_probs(refine_artifact, "labels", task, "val")).max() < 1e-6
    caplog.clear()
    pipeline.run(compose_run(tmp_path, "again", "refine=in_context"))  # Bayes + refined: refine is reused
    messages = stage_messages(caplog)
    assert any(m.startswith("refine: reused") for m in messages)
    assert any(m.startswith("aggregate: BayesianDawidSkene fitted") for m in messages)


@pytest.mark.integration
def test_a_demonstration_source_that_is_not_a_teacher_is_named(tmp_path):
    cfg = compose_run(tmp_path, "bad", "refine=in_context", "refine.weak_labels=oracle")
    with pytest.raises(UserInputError, match="refine.weak_labels='oracle' is not one of this run's teachers "
                                             r"\(vader, tfidf_lr, smollm2\) nor best_on_val"):
        pipeline.run(cfg)
    assert not list((tmp_path / "runs" / ".cache").glob("refine/*/manifest.json"))  # nothing half-written
