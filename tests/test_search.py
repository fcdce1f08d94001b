"""Weak-to-strong search (weaks2strong/search) on tiny random Llamas built from configs: the strong
model and the guide pair share a byte-level tokenizer, so scores can be checked by hand."""
import numpy as np
import pytest
import torch

from weaks2strong.models.causal_lm import generate_answers, load_causal_lm
from weaks2strong.search.cbs import StrongModel, best_of_n, chunk_beam_search
from weaks2strong.search.guide import GuidePair
from weaks2strong.zoo import resolve_model
from weaks2strong.zoo.tiny import build_tiny

QUESTION = "What do plants make sugar from?"
PROMPT = "Question: {question}\nAnswer:"


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory):
    """Three tiny Llamas that differ only in their random weights: strong, tuned, untuned."""
    lms = []
    for seed in (0, 1, 2):
        folder = tmp_path_factory.mktemp(f"llama{seed}")
        build_tiny("llama", folder, seed=seed)
        lms.append(load_causal_lm(str(folder)))
    return lms


@pytest.fixture(scope="module")
def guide(tiny_lms):
    (tok, tuned), (_, untuned) = tiny_lms[1], tiny_lms[2]
    return GuidePair(tuned, untuned, tok, PROMPT)


def strong_model(tiny_lms, temperature=1.0, max_new_tokens=8) -> StrongModel:
    tok, lm = tiny_lms[0]
    return StrongModel(lm, tok, temperature=temperature, max_new_tokens=max_new_tokens)


def prompt_ids(tiny_lms) -> list[int]:
    tok = tiny_lms[0][0]
    return tok(PROMPT.format(question=QUESTION)).input_ids


def scorer(guide):
    return lambda texts, ended: guide.score_texts(QUESTION, texts, ended)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hand_logprob(lm, ids: list[int], start: int) -> float:
    """Σ log p(ids[t] | ids[:t]) for t ≥ start, from one plain forward of the whole sequence."""
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([ids])).logits[0].double()  # (T, V)
    logprobs = logits.log_softmax(-1)
    return float(sum(logprobs[t - 1, ids[t]] for t in range(start, len(ids))))


@pytest.mark.parametrize("n", [1, 5])
def test_cbs_with_one_beam_n_samples_and_no_chunking_is_best_of_n(tiny_lms, guide, n):
    strong = strong_model(tiny_lms)
    cbs = chunk_beam_search(strong, prompt_ids(tiny_lms), scorer(guide), width=1, samples=n, chunk=None,
                            generator=seeded(3))
    bon = best_of_n(strong, prompt_ids(tiny_lms), scorer(guide), n=n, generator=seeded(3))
    assert (cbs.best.text, cbs.best.tokens, cbs.best.score) == (bon.best.text, bon.best.tokens, bon.best.score)
    assert cbs.strong_tokens == bon.strong_tokens <= n * strong.max_new_tokens
    if n > 1:  # the samples differ, so the choice was a real one
        assert len({h.text for h in bon.kept}) > 1
        assert bon.best.score == max(h.score for h in bon.kept)


def test_cbs_samples_w_times_k_rows_from_the_first_chunk_on(tiny_lms, guide):
    """Equal compute with best-of-(W·K): CBS starts from W copies of the empty answer, so with one
    chunk to the end it is best-of-(W·K) under the same seed, keeping the W best."""
    strong = strong_model(tiny_lms)
    cbs = chunk_beam_search(strong, prompt_ids(tiny_lms), scorer(guide), width=2, samples=3, chunk=None,
                            generator=seeded(4))
    bon = best_of_n(strong, prompt_ids(tiny_lms), scorer(guide), n=6, generator=seeded(4))
    assert cbs.strong_tokens == bon.strong_tokens > 3 * strong.max_new_tokens  # more than K rows were sampled
    assert [(h.text, h.score) for h in cbs.kept] == [(h.text, h.score) for h in bon.kept[:2]]


def test_a_hypothesis_score_is_the_hand_computed_log_ratio(tiny_lms, guide):
    tok, tuned, untuned = guide.tok, guide.tuned, guide.untuned
    prompt = tok(PROMPT.format(question=QUESTION)).input_ids
    for text, ended in [("carbon dioxide", True), ("carbon di", False), ("water", True)]:
        ids = prompt + tok(" " + text + ("\n" if ended else ""), add_special_tokens=False).input_ids
        expected = hand_logprob(tuned, ids, len(prompt)) - hand_logprob(untuned, ids, len(prompt))
        got = guide.score_texts(QUESTION, [text], [ended])[0]
        assert got == pytest.approx(expected, abs=1e-4)
    assert guide.score_texts(QUESTION, [""], [False])[0] == 0.0  # nothing said yet


def test_scoring_text_equals_scoring_tokens_when_the_tokenizers_are_the_same(tiny_lms, guide):
    """The search decodes the strong model's tokens and the guide reads the text again; with one
    tokenizer on both sides that round trip must change no score."""
    strong = strong_model(tiny_lms)
    result = chunk_beam_search(strong, prompt_ids(tiny_lms), scorer(guide), width=3, samples=3, chunk=2,
                               generator=seeded(0))
    for hyp in result.kept:
        text = strong.tok.decode(hyp.tokens)
        direct = guide.score_ids(guide.prompt_ids(QUESTION), [guide.tok(" " + text.strip() + "\n" * hyp.ended,
                                                                           add_special_tokens=False).input_ids])[0]
        assert hyp.text == text.split("\n")[0]
        assert hyp.score == pytest.approx(direct, abs=1e-4)  # batched vs alone: float32 rounding
    tokens = guide.tok(" carbon dioxide\n", add_special_tokens=False).input_ids
    by_tokens = guide.score_ids(guide.prompt_ids(QUESTION), [tokens])[0]
    assert guide.score_texts(QUESTION, ["carbon dioxide"], [True])[0] == pytest.approx(by_tokens, abs=1e-9)


def test_cbs_keeps_the_best_w_and_its_cache_continues_the_prompt(tiny_lms, guide):
    """Near-zero temperature: every sample is the greedy token, so any beam, chunked any way, must
    rebuild the greedy answer that a plain decoding loop gives; a wrong cache row or position
    would change it."""
    tok, lm = tiny_lms[0]
    greedy = generate_answers(lm, tok, [PROMPT.format(question=QUESTION)], max_new_tokens=8)[0][0]
    for width, samples, chunk in [(1, 1, 1), (2, 2, 3), (3, 2, 2)]:
        strong = strong_model(tiny_lms, temperature=1e-4)
        result = chunk_beam_search(strong, prompt_ids(tiny_lms), scorer(guide), width, samples, chunk, seeded(0))
        assert result.best.text.strip() == greedy
        assert len(result.kept) <= width
        assert [h.score for h in result.kept] == sorted((h.score for h in result.kept), reverse=True)
        assert result.strong_tokens <= width * samples * strong.max_new_tokens


def test_temperature_zero_is_the_greedy_answer(tiny_lms, guide):
    tok, lm = tiny_lms[0]
    greedy = generate_answers(lm, tok, [PROMPT.format(question=QUESTION)], max_new_tokens=8)[0][0]
    result = best_of_n(strong_model(tiny_lms, temperature=0), prompt_ids(tiny_lms), scorer(guide), 1, seeded(5))
    assert result.best.text.strip() == greedy


def test_cbs_searches_beyond_sampling(tiny_lms, guide):
    """With W·K samples of the same budget, CBS's answer scores at least as well under the guide as
    a plain sample's, on several seeds (it keeps the guide's best at every chunk)."""
    strong = strong_model(tiny_lms)
    cbs, plain = [], []
    for seed in range(4):
        cbs.append(chunk_beam_search(strong, prompt_ids(tiny_lms), scorer(guide), 2, 3, 2, seeded(seed)).best.score)
        plain.append(best_of_n(strong, prompt_ids(tiny_lms), scorer(guide), 1, seeded(seed)).best.score)
    assert np.mean(cbs) > np.mean(plain)


def test_bad_search_settings_fail_in_one_line(tiny_lms, guide):
    with pytest.raises(ValueError, match="width=0"):
        chunk_beam_search(strong_model(tiny_lms), prompt_ids(tiny_lms), scorer(guide), 0, 2, 2, seeded(0))
    with pytest.raises(ValueError, match="temperature=-1"):
        strong_model(tiny_lms, temperature=-1)


def answers_by_method(folders, methods) -> list[tuple]:
    """(folder, method name) of each stored search_answers artifact of the test split, the method
    known by the config its manifest records."""
    import json

    from omegaconf import OmegaConf

    names = {json.dumps(OmegaConf.to_container(m), sort_keys=True): name for name, m in methods.items()}
    out = []
    for folder in folders:
        config = json.loads((folder / "manifest.json").read_text())["config"]
        if config["split"] == "test":
            out.append((folder, names[json.dumps(config["method"], sort_keys=True)]))
    return out


@pytest.mark.integration
def test_sciq_search_end_to_end_with_tiny_causal_lms(tmp_path, mirror, models_dir):
    """``experiment=sciq_search`` on real SciQ rows with tiny Llamas: the guide is tuned and kept,
    every method answers val and test, test's numbers follow from the stored answers, and a rerun
    reuses every stage."""
    import json
    from pathlib import Path

    import pandas as pd
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from weaks2strong import pipeline
    from weaks2strong.cli import CONFIG_DIR
    from weaks2strong.tasks.generation import exact_match, load_generation_task

    overrides = [
        "experiment=sciq_search", "logger=none", f"paths.output_dir={tmp_path}/run", f"paths.runs_dir={tmp_path}/runs",
        f"paths.models_dir={models_dir}", "task.sizes.weak_train=16", "task.sizes.w2s_train=4", "task.sizes.val=4",
        "task.sizes.test=6", "search.strong=tiny-llama", "search.guide.model=tiny-llama", "search.guide.epochs=1",
        "search.max_new_tokens=4", "search.strong_shots=2", "+search.guide.progress=false",
    ]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics = pipeline.run(cfg)
    assert set(metrics["search"]) == {"val", "test"}
    assert set(metrics["search"]["test"]) == {"plain", "best_of_n", "cbs", "greedy"}
    plain, bon = metrics["search"]["test"]["plain"], metrics["search"]["test"]["best_of_n"]
    assert plain["n"] == 6 and plain["strong_tokens_per_question"] <= 4
    assert bon["strong_tokens_per_question"] <= 8 * 4 and bon["strong_tokens_per_question"] > 4
    guide = Path(json.loads((tmp_path / "run" / "artifacts.json").read_text())["search_guide"])
    assert (guide / "model.safetensors").is_file()
    task = load_generation_task("sciq_gen", dict(cfg.task.sizes), mirror=str(mirror))
    stored = [p for p in (tmp_path / "runs" / ".cache" / "search_answers").iterdir() if not p.name.startswith(".")]
    assert len(stored) == 8  # 4 methods x 2 splits
    checked = set()
    for folder, name in answers_by_method(stored, cfg.search.methods):  # each method's EM from its own answers
        answers = pd.read_parquet(folder / "answers.parquet")
        assert answers["example_id"].tolist() == task.split("test")["example_id"].tolist()
        hits = [exact_match(a, g) for a, g in zip(answers["answer"], task.answers("test"))]
        assert metrics["search"]["test"][name]["em"] == pytest.approx(float(np.mean(hits))), name
        checked.add(name)
    assert checked == set(cfg.search.methods)
    assert "| cbs (2, 4, 2) | test |" in (tmp_path / "run" / "report.md").read_text()
    assert pipeline.run(cfg)["search"] == metrics["search"]  # every stage reused, the same numbers


@pytest.mark.parametrize("override, message", [
    ("search.methods.cbs.width=0", "config search.methods.cbs.width must be an integer >= 1, got 0"),
    ("search.methods.cbs.chunk=0", "config search.methods.cbs.chunk must be an integer >= 1 or null"),
])
def test_bad_search_method_is_one_line_naming_the_key(tmp_path, override, message):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from weaks2strong import pipeline
    from weaks2strong.cli import CONFIG_DIR
    from weaks2strong.runtime.errors import UserInputError

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=[
            "experiment=sciq_search", override, "logger=none", f"paths.output_dir={tmp_path}/run",
            f"paths.runs_dir={tmp_path}/runs"])
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipeline.run(cfg)
    assert not (tmp_path / "runs" / ".cache" / "search_guide").exists()  # refused before any stage ran


@pytest.mark.integration
def test_sentiment_search_end_to_end_scores_continuations_with_the_reward(tmp_path, mirror, models_dir):
    """``experiment=sentiment_search`` with tiny Llamas and the real MiniLM reward: the guide is tuned
    on positive reviews only, each method's reward is the reward model's P(positive) of opening +
    continuation, recomputed here from the stored answers."""
    import json
    from pathlib import Path

    import pandas as pd
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from safetensors.torch import load_file

    from weaks2strong import pipeline
    from weaks2strong.cli import CONFIG_DIR
    from weaks2strong.search.reward import SentimentReward
    from weaks2strong.tasks.generation import load_generation_task

    overrides = [
        "experiment=sentiment_search", "logger=none", f"paths.output_dir={tmp_path}/run",
        f"paths.runs_dir={tmp_path}/runs", f"paths.models_dir={models_dir}", "task.sizes.weak_train=30",
        "task.sizes.w2s_train=2", "task.sizes.val=3", "task.sizes.test=5", "search.strong=tiny-llama",
        "search.guide.model=tiny-llama", "search.guide.epochs=1", "search.max_new_tokens=6",
        "+search.guide.progress=false", "search.reward.train_size=60", "+search.reward.progress=false",
        "search.methods.cbs.chunk=2",
    ]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics = pipeline.run(cfg)
    assert metrics["metric"] == "reward" and 0.5 < metrics["reward_accuracy"] <= 1.0  # better than chance
    guide = Path(json.loads((tmp_path / "run" / "artifacts.json").read_text())["search_guide"])
    manifest = json.loads((guide / "manifest.json").read_text())
    task = load_generation_task("imdb_continue", dict(cfg.task.sizes), mirror=str(mirror), split_seed=0,
                                prompt="{question}")
    positive = task.split("weak_train")[task.split("weak_train")["label"] == 1]
    assert json.loads((guide / "timing.json").read_text())["rows"] == len(positive) < 30  # positives only
    assert manifest["stage"] == "search_guide"
    # the kept weights are the guide's, tuned: the released model's tensors, not all of them unchanged
    tuned = load_file(guide / "model.safetensors")
    released = load_causal_lm(resolve_model("tiny-llama", str(models_dir)))[1].state_dict()
    assert tuned and tuned.keys() <= released.keys() and all(tuned[k].shape == released[k].shape for k in tuned)
    assert any(not torch.equal(tuned[k], released[k]) for k in tuned)
    reward = SentimentReward(models_dir=str(models_dir), mirror=str(mirror), train_size=60, progress=False).fit()
    stored = [p for p in (tmp_path / "runs" / ".cache" / "search_answers").iterdir() if not p.name.startswith(".")]
    checked = set()
    for folder, name in answers_by_method(stored, cfg.search.methods):  # each method's reward from its own answers
        answers = pd.read_parquet(folder / "answers.parquet")
        assert answers["example_id"].tolist() == task.split("test")["example_id"].tolist()
        mean = float(np.mean(reward([f"{q} {a}" for q, a in zip(task.questions("test"), answers["answer"])])))
        assert abs(mean - metrics["search"]["test"][name]["reward"]) < 1e-6, name
        checked.add(name)
    assert checked == set(cfg.search.methods)
    assert "| cbs (2, 4, 2) | test |" in (tmp_path / "run" / "report.md").read_text()
