"""Confidence-weighted DPO (``preference_loss``, ``DPOModule``): the loss against hand values, the
completion masks, cached reference log-probs against a fresh computation, a tiny-model run that
widens the margin, the implicit-reward judge, and bad pairs."""
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from weaks2strong.models.causal_lm import load_causal_lm
from weaks2strong.models.losses import preference_loss
from weaks2strong.models.preference import (
    DPOModule,
    PreferenceCollator,
    PreferenceRow,
    check_pairs,
    pair_logprobs,
    reward_margins,
    score_pairs,
    with_reference,
)
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.student.data.preferences import PreferenceDataModule
from weaks2strong.zoo import resolve_model

# log π(y⁺), log π(y⁻), log π_ref(y⁺), log π_ref(y⁻) for two pairs: Δ = (−3 + 4) − (−5 + 4.5) = 1.5; Δ = −0.5
LOGPS = [torch.tensor(v) for v in ([-3.0, -2.0], [-5.0, -1.0], [-4.0, -2.5], [-4.5, -2.0])]
DELTAS = np.array([1.5, -0.5])


def log_sigmoid(x):
    return -np.log1p(np.exp(-x))


@pytest.mark.parametrize("p", [1.0, 0.9])  # DPO, then cDPO with ε = 0.1
def test_sigmoid_loss_equals_hand_values(p):
    beta, w = 0.5, np.array([1.0, 3.0])
    loss, chosen, rejected = preference_loss(*LOGPS, torch.tensor([p, p]), torch.tensor(w), beta=beta)
    per_pair = -p * log_sigmoid(beta * DELTAS) - (1 - p) * log_sigmoid(-beta * DELTAS)
    assert loss.item() == pytest.approx((w * per_pair).sum() / w.sum(), abs=1e-6)
    np.testing.assert_allclose(chosen.numpy(), beta * np.array([1.0, 0.5]), atol=1e-6)
    np.testing.assert_allclose(rejected.numpy(), beta * np.array([-0.5, 1.0]), atol=1e-6)


def test_plain_dpo_is_the_mean_and_ipo_asks_for_a_margin():
    loss, _, _ = preference_loss(*LOGPS, beta=0.1)  # p = 1, w = 1
    assert loss.item() == pytest.approx(np.mean(-log_sigmoid(0.1 * DELTAS)), abs=1e-6)
    ipo, _, _ = preference_loss(*LOGPS, torch.tensor([1.0, 0.75]), beta=0.25, kind="ipo")
    assert ipo.item() == pytest.approx(np.mean([(1.5 - 2.0) ** 2, (-0.5 - 1.0) ** 2]), abs=1e-6)
    at_half, _, _ = preference_loss(*LOGPS, torch.tensor([0.5, 0.5]), beta=0.1)  # no preference: Δ's sign is moot
    flipped, _, _ = preference_loss(LOGPS[1], LOGPS[0], LOGPS[3], LOGPS[2], torch.tensor([0.5, 0.5]), beta=0.1)
    assert at_half.item() == pytest.approx(flipped.item(), abs=1e-7)
    with pytest.raises(ValueError, match="sigmoid or ipo"):
        preference_loss(*LOGPS, kind="hinge")


@pytest.fixture
def tiny(models_dir):
    torch.manual_seed(0)
    return load_causal_lm(resolve_model("tiny-llama", models_dir))


ROWS = [PreferenceRow("Q: color of the sky?\nA:", "blue", "green", p=0.9, weight=1.0),
        PreferenceRow("Q: 2 + 2?\nA:", "four", "five or six", p=1.0, weight=0.5),
        PreferenceRow("Q: capital of France?\nA:", "Paris", "Rome", p=0.8, weight=1.0),
        PreferenceRow("Q: opposite of hot?\nA:", "cold", "warm", p=1.0, weight=1.0)]


def test_only_completion_tokens_are_targets_and_both_sides_share_the_prompt(tiny):
    tok, _ = tiny
    batch = PreferenceCollator(tok, max_prompt_tokens=8, max_answer_tokens=3)(ROWS[:2])
    assert batch["input_ids"].shape[0] == 4  # chosen 0, chosen 1, rejected 0, rejected 1
    for j, (row, side) in enumerate([(ROWS[0], "chosen"), (ROWS[1], "chosen"), (ROWS[0], "rejected"),
                                     (ROWS[1], "rejected")]):
        prompt = tok(row.prompt).input_ids[-8:]  # the prompt cut from the left
        completion = tok(" " + getattr(row, side) + "\n", add_special_tokens=False).input_ids[:3]
        n = len(prompt) + len(completion)
        assert batch["input_ids"][j, :n].tolist() == prompt + completion
        assert batch["target_mask"][j].nonzero().flatten().tolist() == list(range(len(prompt), n))
        assert batch["attention_mask"][j].sum().item() == n


def test_cached_reference_logprobs_equal_a_fresh_computation_and_start_the_loss_at_log2(tiny):
    tok, lm = tiny
    collator = PreferenceCollator(tok)
    rows = with_reference(lm, collator, ROWS, batch_size=3)
    fresh = score_pairs(lm, collator, ROWS, batch_size=4)
    np.testing.assert_allclose([[r.ref_chosen, r.ref_rejected] for r in rows], fresh, atol=1e-5)
    module = DPOModule(lm, optimizer=torch.optim.AdamW)
    batch = collator([r for r in rows if r.p == 1.0])
    with torch.no_grad():  # policy = reference: Δ = 0, so every p = 1 pair costs log 2
        assert module._step(batch, "val").item() == pytest.approx(math.log(2), abs=1e-5)


def test_a_tiny_dpo_run_widens_the_margin_and_the_judge_follows_the_pair_order(tiny, tmp_path):
    tok, lm = tiny
    collator = PreferenceCollator(tok)
    rows = with_reference(lm, collator, ROWS)
    before = reward_margins(lm, collator, rows)
    np.testing.assert_allclose(before, 0.0, atol=1e-5)  # the untrained policy is its reference
    module = DPOModule(lm, optimizer=lambda params: torch.optim.AdamW(params, lr=5e-3), beta=0.5)
    trainer = pl.Trainer(max_steps=12, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=PreferenceDataModule(collator, rows, rows, batch_size=4))
    after = reward_margins(module.lm, collator, rows, beta=0.5)
    assert (after > 0.5).all(), after  # every chosen completion now out-scores its rejected one
    swapped = [PreferenceRow(r.prompt, r.rejected, r.chosen, ref_chosen=r.ref_rejected, ref_rejected=r.ref_chosen)
               for r in rows]
    np.testing.assert_allclose(reward_margins(module.lm, collator, swapped, beta=0.5), -after, atol=1e-5)


@pytest.mark.parametrize("row, message", [
    (PreferenceRow("x", "same answer", " same answer "), "pair 1 has chosen identical to rejected ('same answer')"),
    (PreferenceRow("x", "a", "  "), "pair 1 has an empty completion"),
    (PreferenceRow("x", "a", "b", p=1.2), "pair 1 has p = 1.2, outside [0, 1]"),
    (PreferenceRow("x", "a", "b", p=float("nan")), "pair 1 has p = nan, outside [0, 1]"),
    (PreferenceRow("x", "a", "b", weight=-1.0), "pair 1 has weight -1.0 < 0"),
])
def test_bad_pairs_are_refused_naming_the_row(row, message):
    with pytest.raises(UserInputError, match="^" + re.escape(f"pairs.parquet: preference {message}")):
        check_pairs([ROWS[0], row], "pairs.parquet")


def test_rows_without_reference_logprobs_are_refused(tiny):
    tok, _ = tiny
    with pytest.raises(ValueError, match="train rows lack reference log-probs"):
        PreferenceDataModule(PreferenceCollator(tok), ROWS, [], batch_size=2)


@pytest.mark.parametrize("which", ["llama", "gemma"])
@pytest.mark.parametrize("unpadded", [False, True])
def test_a_shared_prompt_gives_the_same_logprobs_and_gradients(which, unpadded, tiny):
    """Each prompt run once for both completions (its cache repeated) equals the 2B full sequences:
    the log-probs and every weight's gradient. Gemma: prompts longer than its sliding window of 8.
    ``unpadded``: the same again, with and without a shared prompt, run a pair at a time."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    tok, lm = tiny
    rows = ROWS
    if which == "gemma":
        torch.manual_seed(0)
        lm = AutoModelForCausalLM.from_config(Gemma3TextConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, sliding_window=8, max_position_embeddings=256))
        rows = [replace(r, prompt=r.prompt * 3) for r in ROWS]  # 20+ tokens
    plain, shared = PreferenceCollator(tok), PreferenceCollator(tok, share_prompt=True, unpadded=unpadded)
    tried = [plain, shared] + ([PreferenceCollator(tok, unpadded=True)] if unpadded else [])
    grads, got = [], []
    for collator in tried:
        lm.zero_grad()
        chosen, rejected = pair_logprobs(lm, collator(rows))
        (chosen.sum() - 2 * rejected.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in lm.named_parameters() if p.grad is not None})
        got.append(torch.stack([chosen, rejected]).detach())
    assert len(grads[0]) > 0
    for logps, grad in zip(got[1:], grads[1:]):
        torch.testing.assert_close(logps, got[0], atol=1e-4, rtol=1e-5)
        assert grad.keys() == grads[0].keys()
        for name in grads[0]:
            torch.testing.assert_close(grad[name], grads[0][name], atol=1e-4, rtol=1e-4, msg=name)
    batch = shared(rows)
    assert batch["prompt_ids"].shape[0] == len(rows) and batch["completion_ids"].shape[0] == 2 * len(rows)
