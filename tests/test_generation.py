"""The generation path: answers and their metrics, the teacher-forcing batch and loss, the candidate
pool, bad input, and teach → aggregate → SFT → evaluate end to end with tiny causal LMs."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong.cli import CONFIG_DIR
from weaks2strong.models.causal_lm import (
    CandidateCollator,
    CandidateRow,
    SequenceLikelihoodModule,
    generate_answers,
    load_causal_lm,
)
from weaks2strong.models.losses import weighted_teacher_forcing_loss
from weaks2strong.pipeline.generation.aggregate import gold_index
from weaks2strong.pipeline.generation.teach import candidate_pool
from weaks2strong.tasks import TaskError
from weaks2strong.tasks.generation import exact_match, normalize_answer, read_qa_blocks, token_f1
from weaks2strong.zoo import resolve_model


@pytest.fixture(scope="module")
def tiny_lm(models_dir):
    return load_causal_lm(resolve_model("tiny-llama", models_dir))


def test_answer_normalisation_and_scores():
    assert normalize_answer("The  Coriolis effect!") == "coriolis effect"
    assert exact_match("an Oxidant.", "oxidant") == 1.0
    assert exact_match("oxidants", "oxidant") == 0.0
    # prediction "red blood cells" vs gold "white blood cells": 2 shared of 3 and 3 -> F1 2/3
    assert token_f1("red blood cells", "white blood cells") == pytest.approx(2 / 3)
    assert token_f1("", "cells") == 0.0


def test_completion_only_masking_and_truncation(tiny_lm):
    tok, _ = tiny_lm
    collate = CandidateCollator(tok, max_prompt_tokens=64, max_answer_tokens=5)
    batch = collate([CandidateRow("Question: q?\nAnswer:", ["ab", "a much longer answer"], [0.7, 0.3], 0.5)])
    assert batch["input_ids"].shape[0] == 2 and batch["slots"].tolist() == [[0, 0], [0, 1]]
    short = batch["input_ids"][0][batch["target_mask"][0]].tolist()
    assert tok.decode(short) == " ab\n"  # prompt tokens carry no loss; the newline ends the answer
    long = batch["input_ids"][1][batch["target_mask"][1]].tolist()
    assert tok.decode(long) == " a mu"  # the byte tokenizer: cut at max_answer_tokens = 5 tokens
    prompt_len = len(tok("Question: q?\nAnswer:", add_special_tokens=True).input_ids)
    assert not batch["target_mask"][:, :prompt_len].any()
    assert batch["probs"].tolist() == [[pytest.approx(0.7), pytest.approx(0.3)]]


def test_weighted_loss_equals_a_hand_computation(tiny_lm):
    tok, lm = tiny_lm
    rows = [CandidateRow("Q: a?\nA:", ["x", "yz"], [0.75, 0.25], 0.8), CandidateRow("Q: b?\nA:", ["w"], [1.0], 0.2)]
    module = SequenceLikelihoodModule(lm, optimizer=torch.optim.SGD)
    loss = module._loss(CandidateCollator(tok)(rows))

    def nll(prompt, answer):  # one plain forward of prompt + completion, summed over completion tokens
        p = tok(prompt, add_special_tokens=True).input_ids
        c = tok(" " + answer + "\n", add_special_tokens=False).input_ids
        logits = lm(torch.tensor([p + c])).logits[0].log_softmax(-1)
        return -sum(logits[len(p) + j - 1, t] for j, t in enumerate(c))

    hand = (0.8 * (0.75 * nll(rows[0].prompt, "x") + 0.25 * nll(rows[0].prompt, "yz"))
            + 0.2 * nll(rows[1].prompt, "w")) / (0.8 + 0.2)
    assert loss.item() == pytest.approx(hand.item(), abs=1e-5)
    # the pure function: padding slots (q = 0) never count, even with a non-finite NLL there
    nlls = torch.tensor([[1.0, 2.0], [3.0, float("inf")]])
    out = weighted_teacher_forcing_loss(nlls, torch.tensor([[0.5, 0.5], [1.0, 0.0]]), torch.tensor([1.0, 3.0]))
    assert out.item() == pytest.approx((1 * 1.5 + 3 * 3.0) / 4)


def test_a_tokenizer_without_pad_token_pads_with_eos(tmp_path, models_dir):
    path = Path(resolve_model("tiny-llama", models_dir))
    tok, _ = load_causal_lm(str(path))
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert config.get("pad_token") is not None
    import shutil
    copy = tmp_path / "nopad"
    shutil.copytree(path, copy)
    config.pop("pad_token", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    special = copy / "special_tokens_map.json"
    if special.is_file():
        data = json.loads(special.read_text())
        data.pop("pad_token", None)
        special.write_text(json.dumps(data))
    tok2, _ = load_causal_lm(str(copy))
    assert tok2.pad_token == tok2.eos_token
    batch = CandidateCollator(tok2)([CandidateRow("Q:", ["a"], [1.0]), CandidateRow("Q: longer", ["bc"], [1.0])])
    assert (batch["input_ids"][0][batch["attention_mask"][0] == 0] == tok2.eos_token_id).all()


class _Proposals:
    def __init__(self, rows):
        self.frame = pd.DataFrame(rows, columns=["split", "example_id", "rank", "text", "norm"])

    def table(self, name):
        return self.frame


def test_candidate_pool_votes_and_excludes_examples_without_candidates():
    from weaks2strong.tasks.generation import GenerationTask

    split = pd.DataFrame({"example_id": ["e0", "e1", "e2"], "question": ["a", "b", "c"], "answer": ["x", "y", "z"]})
    task = GenerationTask("t", {"val": split})
    one = _Proposals([("val", "e0", 0, "The X", "x"), ("val", "e0", 1, "y", "y"), ("val", "e1", 0, "", "")])
    two = _Proposals([("val", "e0", 0, "x.", "x"), ("val", "e2", 0, "q", "q")])
    pools = candidate_pool(task, {"a": one, "b": two}, "val", max_candidates=8)
    assert pools[0] == [("x", "The X"), ("y", "y")]  # most voted first, the first surface form kept
    assert pools[1] == []  # only an empty answer: no candidate, excluded from training and counted
    assert gold_index(pools, ["x", "y", "z"]).tolist() == [0, 0, 1]  # the "none" slot is len(pool)


def test_an_empty_gold_answer_names_its_block(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("What is water?\nh2o\n\nWhat is nothing?\n   \n")
    with pytest.raises(TaskError, match="block 2"):
        read_qa_blocks(path)
    path.write_text("What is water?\nh2o\n\nWhat is nothing?\nthe\n")
    with pytest.raises(TaskError, match="block 2 has an empty gold answer"):
        read_qa_blocks(path)


# experiment=sciq_gen with tiny causal LMs everywhere (also the tripwire's generation run)
TINY_SCIQ_GEN = [
    "teachers.smollm2_5shot.model=tiny-llama", "teachers.smollm2_5shot.max_new_tokens=4",
    "teachers.smollm2_ft_a.model=tiny-llama", "teachers.smollm2_ft_a.epochs=1",
    "teachers.smollm2_ft_a.max_new_tokens=4", "~teachers.smollm2_ft_b",
    "student.lm=tiny-llama", "student.generate.max_new_tokens=4", "student.save_weights=true",
    "generation.student_shots=2", "align=dpo", "align.max_pairs=2", "align.min_pair_mass=0.0",
]


@pytest.mark.integration
def test_sciq_gen_end_to_end_with_tiny_causal_lms(tmp_path, mirror, models_dir):
    from weaks2strong import pipeline

    overrides = [
        "experiment=sciq_gen", "debug=fast", "logger=csv", f"paths.output_dir={tmp_path}/run",
        f"paths.runs_dir={tmp_path}/runs", f"paths.models_dir={models_dir}",
        "task.sizes.weak_train=40", "task.sizes.w2s_train=16", "task.sizes.val=12", "task.sizes.test=12",
        *TINY_SCIQ_GEN,
    ]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics = pipeline.run(cfg)
    rows = metrics["rows"]
    assert set(rows) == {"teacher smollm2_5shot", "teacher smollm2_ft_a", "teacher retrieval", "aggregate",
                         "student k-shot (untrained)", "ceiling", "student", "student + DPO",
                         "student + DPO (gold pairs)"}
    for name, score in rows.items():
        for split, s in score.items():
            assert 0.0 <= s["em"] <= s["f1"] + 1e-12 <= 1.0 + 1e-12, (name, split)
    run = Path(tmp_path / "run")
    assert "| aggregate |" in (run / "report.md").read_text()
    artifacts = json.loads((run / "artifacts.json").read_text())
    targets = pd.read_parquet(Path(artifacts["aggregate"]) / "targets.parquet")
    q = targets[targets["split"] == "w2s_train"].groupby("example_id")["q"].sum()
    assert (q <= 1 + 1e-9).all() and len(q) > 0
    # the retrieval teacher's test EM follows from its proposals on the same rows
    from weaks2strong.tasks.generation import load_generation_task

    task = load_generation_task("sciq_gen", dict(cfg.task.sizes), mirror=str(mirror))
    assert rows["teacher retrieval"]["test"]["em"] == pytest.approx(np.mean(
        [exact_match(p, a) for p, a in zip(_retrieval_answers(task), task.answers("test"))]))
    # DPO's pairs: the posterior's p and w, the reference log-probs stored beside them
    pairs = pd.read_parquet(Path(artifacts["align"]["student + DPO"]) / "pairs.parquet")
    assert len(pairs) > 0 and pairs["p"].between(0.5, 1.0).all() and pairs["weight"].between(0.0, 1.0 + 1e-9).all()
    assert pairs[["ref_chosen", "ref_rejected"]].notna().all().all() and (pairs["ref_chosen"] < 0).all()
    gold_pairs = pd.read_parquet(Path(artifacts["align"]["student + DPO (gold pairs)"]) / "pairs.parquet")
    assert (gold_pairs["p"] == 1.0).all() and set(gold_pairs["chosen"]) <= set(task.answers("w2s_train"))
    again = pipeline.run(cfg)  # every stage reused, the same numbers
    assert again["rows"] == rows


def _retrieval_answers(task):
    from weaks2strong.teachers.generating import RetrievalTeacher

    teacher = RetrievalTeacher()
    teacher.fit(task)
    return [a[0] for a in teacher.propose(task, "test")]


def test_a_shared_prefix_changes_no_score_and_no_greedy_answer(tiny_lm):
    """The k-shot demonstrations' cache, computed once, gives the scores and the greedy answers of the
    whole sequence read from scratch."""
    from weaks2strong.models.causal_lm import encode_prompts, generate_answers, prefix_cache
    from weaks2strong.models.lm_logprobs import score_candidates, score_candidates_plain

    tok, lm = tiny_lm
    lm.eval()
    demos = "Question: sky?\nAnswer: blue\n\nQuestion: grass?\nAnswer: green\n\n"
    prompts = ["Question: sun?\nAnswer:", "Question: a much longer question here?\nAnswer:"]
    head, encoded = encode_prompts(tok, demos, prompts, 512)
    cache = prefix_cache(lm, head)
    cands = [tok(" yellow\n", add_special_tokens=False).input_ids, tok(" red\n", add_special_tokens=False).input_ids]
    for ids in encoded:
        fast, count = score_candidates(lm, ids, cands, prefix_cache=cache, prefix_length=len(head))
        plain, _ = score_candidates_plain(lm, head + ids, cands)
        assert torch.allclose(fast, plain, atol=1e-4) and count.tolist() == [len(c) for c in cands]
    ours = generate_answers(lm, tok, prompts, max_new_tokens=6, batch_size=2, prefix=demos)
    for prompt, (answer,) in zip(encoded, ours):
        ids = torch.tensor([head + prompt])
        ref = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        assert answer == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip()
    sampled = generate_answers(lm, tok, prompts, max_new_tokens=6, batch_size=2, num_samples=3, prefix=demos)
    assert [s[0] for s in sampled] == [o[0] for o in ours] and all(len(s) == 4 for s in sampled)


@pytest.mark.parametrize("override, message", [
    ("generation.max_candidates=0", "config key 'generation.max_candidates' must be >= 1, got 0"),
    ("aggregator.method=vote", "config key 'aggregator.method' must be one of bayes, majority, joint, single"),
    ("student.min_prob=1", "config key 'student.min_prob' must be in [0, 1), got 1"),
])
def test_bad_generation_config_is_one_line_naming_the_key(override, message):
    from weaks2strong.runtime.checks import check_command_line

    assert message in check_command_line(["experiment=sciq_gen", override])


def test_gradient_checkpointing_and_frozen_embeddings_leave_the_loss_and_train_the_rest(models_dir):
    rows = [CandidateRow("Q: a?\nA:", ["x", "yz"], [0.75, 0.25], 0.8)]
    losses = []
    for checkpointing in (False, True):
        tok, lm = load_causal_lm(resolve_model("tiny-llama", models_dir))
        lm.train()
        module = SequenceLikelihoodModule(lm, optimizer=torch.optim.SGD, freeze_embeddings=True,
                                      gradient_checkpointing=checkpointing)
        loss = module._loss(CandidateCollator(tok)(rows))
        loss.backward()
        assert lm.get_input_embeddings().weight.grad is None  # the token table stays as pretrained
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lm.parameters() if p.requires_grad)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_lora_starts_as_the_plain_model_and_trains_only_its_adapters(models_dir):
    rows = [CandidateRow("Q: a?\nA:", ["x", "yz"], [0.75, 0.25], 0.8)]
    tok, plain = load_causal_lm(resolve_model("tiny-llama", models_dir))
    _, base = load_causal_lm(resolve_model("tiny-llama", models_dir))
    pretrained = {n: p.detach().clone() for n, p in base.named_parameters()}
    module = SequenceLikelihoodModule(base, optimizer=torch.optim.SGD, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    batch = CandidateCollator(tok)(rows)
    with torch.no_grad():
        assert module._loss(batch).item() == pytest.approx(
            SequenceLikelihoodModule(plain, optimizer=torch.optim.SGD)._loss(batch).item(), abs=1e-6)
    prompts = ["Q: a?\nA:", "Q: what is b?\nA:"]  # the k-shot prefix cache and decoding go through peft too
    assert generate_answers(module.lm, tok, prompts, max_new_tokens=4, prefix="Q: z?\nA: y\n") == \
        generate_answers(plain, tok, prompts, max_new_tokens=4, prefix="Q: z?\nA: y\n")
    trained = [n for n, p in module.lm.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.5)
    before = module._loss(batch)
    for _ in range(3):
        optimizer.zero_grad()
        module._loss(batch).backward()
        optimizer.step()
    assert module._loss(batch).item() < before.item() - 1e-3
    for name, p in module.lm.get_base_model().named_parameters():
        if "lora_" not in name:  # the pretrained weights are untouched
            torch.testing.assert_close(p, pretrained[name.replace(".base_layer", "")], rtol=0, atol=0)
