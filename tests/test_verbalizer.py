"""The causal-LM student on classification (``student=gemma3``, recipe ``verbalize``): verbalizer
scores, the weighted soft cross-entropy against a hand computation, training that moves the scores
the way the targets say, the shared prompt equal to whole sequences (scores, loss, gradients), length
buckets, and the pipeline end to end with a tiny causal LM built from its config."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong.cli import CONFIG_DIR
from weaks2strong.models.causal_lm import CandidateCollator, CandidateRow, SequenceLikelihoodModule, load_causal_lm
from weaks2strong.models.soft_target import predict_proba
from weaks2strong.models.verbalizer import VerbalizerModule
from weaks2strong.zoo import resolve_model

VERBALIZERS = ["Negative", "Positive", "Mixed"]
ROWS = [CandidateRow("Review: a fine film\nAnswer:", VERBALIZERS, [0.7, 0.3, 0.0], 1.0),
        CandidateRow("Review: dull and long, far too long\nAnswer:", VERBALIZERS, [0.0, 0.0, 1.0], 0.25)]


@pytest.fixture
def tiny(models_dir):
    torch.manual_seed(0)
    return load_causal_lm(resolve_model("tiny-llama", models_dir))


def hand_scores(tok, lm, row: CandidateRow) -> list[float]:
    """log p(" <verbalizer>\\n" | prompt), one plain forward per class, summed over the completion tokens."""
    prompt = tok(row.prompt).input_ids
    scores = []
    for verbalizer in row.candidates:
        completion = tok(" " + verbalizer + "\n", add_special_tokens=False).input_ids
        ids = torch.tensor([prompt + completion])
        logp = lm(ids).logits[0, :-1].log_softmax(-1)
        scores.append(sum(logp[len(prompt) - 1 + t, c].item() for t, c in enumerate(completion)))
    return scores


def test_the_loss_is_a_weighted_soft_cross_entropy_over_every_verbalizer(tiny):
    tok, lm = tiny
    module = VerbalizerModule(lm, optimizer=torch.optim.AdamW)
    batch = CandidateCollator(tok, every_candidate=True)(ROWS)
    with torch.no_grad():
        logits = module.batch_logits(batch)  # (2, 3): a zero-mass verbalizer is scored too
        loss = module._loss(batch).item()
    hand = np.array([hand_scores(tok, lm, row) for row in ROWS])
    np.testing.assert_allclose(logits.numpy(), hand, atol=1e-5)
    log_p = hand - np.logaddexp.reduce(hand, axis=1, keepdims=True)
    q, w = np.array([r.probs for r in ROWS]), np.array([r.weight for r in ROWS])
    expected = (w * -(q * log_p).sum(1)).sum() / w.sum()
    assert loss == pytest.approx(expected, abs=1e-5)


def test_training_on_a_class_raises_its_probability(tiny):
    tok, lm = tiny
    # the longest verbalizer: with a byte-level tiny tokenizer it starts as the least likely
    rows = [CandidateRow(f"Review: film number {i}\nAnswer:", VERBALIZERS, [1.0, 0.0, 0.0], 1.0) for i in range(8)]
    loader = [CandidateCollator(tok, every_candidate=True)(rows)]
    module = VerbalizerModule(lm, optimizer=torch.optim.AdamW)
    before = predict_proba(module, loader)[:, 0].mean().item()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    module.train()
    for _ in range(10):
        optimizer.zero_grad()
        module._loss(loader[0]).backward()
        optimizer.step()
    after = predict_proba(module, loader)
    assert before < 0.01 and after[:, 0].mean().item() > 0.5
    torch.testing.assert_close(after.sum(-1), torch.ones(len(rows)))


def tiny_gemma(tok, window: int):
    """A two-layer Gemma 3 with a sliding window of ``window`` tokens."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=window, max_position_embeddings=256))


@pytest.mark.parametrize(("which", "answer_tokens"), [("llama", 8), ("llama", 1), ("gemma8", 8), ("gemma256", 8)])
@pytest.mark.parametrize("every_candidate", [True, False])
def test_a_shared_prompt_gives_the_same_scores_loss_and_gradients(tiny, which, answer_tokens, every_candidate):
    """Each prompt read once, its cache shared by the K verbalizers (share_prompt), equals K full
    sequences per row: the (B, K) log-probs, the loss and every weight's gradient, in fp32 to 1e-5.
    Rows of different prompt lengths (left padding) after a shared prefix ("Review: ", read once), and
    a zero-mass verbalizer (scored or skipped). Gemma with a window of 8 tokens: prompts run past it,
    so the prefix is folded back into each prompt; with 256 it is read once, padding after it. One
    answer token: the prompts' last states score everything."""
    tok, lm = tiny
    lm = tiny_gemma(tok, int(which[5:])) if which.startswith("gemma") else lm
    rows = [ROWS[0], ROWS[1], CandidateRow("Review: " + "so so, " * 4 + "\nAnswer:", VERBALIZERS, [0.2, 0.3, 0.5], 2.0)]
    module = VerbalizerModule(lm, optimizer=torch.optim.AdamW)
    results = []
    for share_prompt in (False, True):
        batch = CandidateCollator(tok, max_answer_tokens=answer_tokens, every_candidate=every_candidate,
                                  share_prompt=share_prompt)(rows)
        assert ("prompt_ids" in batch) == share_prompt
        if share_prompt:
            assert tok.decode(batch["prefix_ids"]).endswith("Review: ")
        lm.zero_grad()
        scores = module.batch_logits(batch) if every_candidate else module.sequence_logprobs(batch)  # (B, K)
        # the verbalizer's loss; without every candidate, the generation student's (weighted teacher forcing)
        loss = module._loss(batch) if every_candidate else SequenceLikelihoodModule._loss(module, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in lm.named_parameters() if p.grad is not None}
        results.append((scores.detach(), loss.item(), grads))
    (plain, plain_loss, plain_grads), (shared, shared_loss, shared_grads) = results
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    assert shared_loss == pytest.approx(plain_loss, abs=1e-5)
    assert shared_grads.keys() == plain_grads.keys() and len(plain_grads) > 0
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)
    if every_candidate:
        assert shared.isfinite().all()
    else:  # zero-mass candidates are not scored in either layout
        assert torch.equal(plain == 0, shared == 0) and (plain == 0).sum() == 3


def test_length_buckets_read_every_row_once_in_batches_of_like_lengths(tiny):
    from weaks2strong.models.causal_lm import CandidateDataModule

    tok, _ = tiny
    rows = [CandidateRow("Review: " + "word " * (i % 13) + "\nAnswer:", VERBALIZERS, [1.0, 0.0, 0.0], 1.0)
            for i in range(40)]
    data = CandidateDataModule(tok, rows, rows[:9], batch_size=4, every_candidate=True, share_prompt=True,
                               bucket_by_length=True)
    lengths = [len(b["prefix_ids"]) + b["prompt_mask"].sum(-1) for b in data.train_dataloader()]  # (B,) per batch
    assert sorted(torch.cat(lengths).tolist()) == sorted(len(tok(r.prompt).input_ids) for r in rows)
    # one pool, sorted then cut: the batches' length ranges add up to at most the whole range
    spread = sum((n.max() - n.min()).item() for n in lengths)
    assert spread <= (torch.cat(lengths).max() - torch.cat(lengths).min()).item()
    # prediction in batches of like lengths comes back in the rows' order
    lm = tiny[1]
    module = VerbalizerModule(lm, optimizer=torch.optim.AdamW)
    mixed = [CandidateRow(r.prompt, VERBALIZERS, [1 / 3] * 3) for r in rows[7:20]]  # lengths 7-12 then 0-6
    plain = CandidateDataModule(tok, rows, rows, batch_size=4, every_candidate=True)
    assert any(b["row_index"].diff().ne(1).any() for b in data.loader(mixed))
    torch.testing.assert_close(predict_proba(module, data.loader(mixed)), predict_proba(module, plain.loader(mixed)),
                               atol=1e-5, rtol=0)
    assert sum(len(b["weights"]) for b in data.val_dataloader()) == 9


@pytest.mark.integration
def test_sst2_with_the_causal_lm_student_end_to_end(tmp_path, models_dir):
    from weaks2strong import pipeline

    overrides = ["student=gemma3", "student.encoder=tiny-llama", "teachers=lexical", "debug=fast", "logger=csv",
                 f"paths.output_dir={tmp_path}/run", f"paths.runs_dir={tmp_path}/runs",
                 f"paths.models_dir={models_dir}", "task.sizes.w2s_train=24", "task.sizes.val=16",
                 "task.sizes.test=16", "student.save_weights=true"]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics = pipeline.run(cfg)
    for row in ("ceiling", "student"):
        assert 0.0 <= metrics[row]["test"]["accuracy"] <= 1.0
    artifacts = json.loads(Path(tmp_path / "run" / "artifacts.json").read_text())
    predictions = pd.read_parquet(Path(artifacts["student"]) / "predictions.parquet")
    probs = predictions.filter(regex=r"^p_\d+$").to_numpy()
    assert set(predictions["split"]) == {"w2s_train", "val"} and probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert metrics == pipeline.run(cfg)  # reused from the artifacts: the same numbers


def test_a_task_without_verbalizers_is_refused_in_one_line(tmp_path):
    args = [sys.executable, "-m", "weaks2strong.cli", "student=gemma3", "teachers=lexical", "debug=fast",
            "logger=none", "task.verbalizers=[]", f"paths.runs_dir={tmp_path}/runs"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("w2s: error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert "task.verbalizers has 0 entries for 2 classes" in errors[0]
