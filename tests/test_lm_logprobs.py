"""Chunked target log-probs and cached candidate scoring agree with their plain references."""
from __future__ import annotations

import pytest
import torch

from weaks2strong.models.lm_logprobs import (
    plain_target_logprobs,
    score_candidates,
    score_candidates_plain,
    sequence_logprobs,
    shared_prompt_logprobs,
    target_logprobs,
)

ATOL = 1e-5


@pytest.fixture(scope="module")
def llama():
    from transformers import AutoModelForCausalLM

    from weaks2strong.zoo import resolve_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-llama"), dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def gemma():
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              max_position_embeddings=256, final_logit_softcapping=5.0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # large logits so that the softcap actually bends them
        model.get_output_embeddings().weight.mul_(20.0)
    return model


def _batch(vocab: int, padding: str, seed: int = 0):
    """Three rows of lengths 20, 13, 7, padded on ``padding``; targets are each row's last 5 tokens."""
    gen = torch.Generator().manual_seed(seed)
    lengths, width = [20, 13, 7], 20
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    target = torch.zeros_like(ids, dtype=torch.bool)
    for b, n in enumerate(lengths):
        span = slice(width - n, width) if padding == "left" else slice(0, n)
        ids[b, span] = torch.randint(5, vocab, (n,), generator=gen)
        attn[b, span] = 1
        end = span.stop
        target[b, end - 5:end] = True
    return ids, attn, target


@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_chunked_equals_plain(llama, padding, chunk_size):
    ids, attn, target = _batch(llama.config.vocab_size, padding)
    with torch.no_grad():
        chunked = target_logprobs(llama, ids, attn, target, chunk_size=chunk_size)
        plain = plain_target_logprobs(llama, ids, attn, target)
    assert chunked.shape == ids.shape and chunked.dtype == torch.float32
    assert (chunked[~target] == 0).all() and (chunked[target] < 0).all()
    torch.testing.assert_close(chunked, plain, atol=ATOL, rtol=0)


def test_gradients_match(llama):
    ids, attn, target = _batch(llama.config.vocab_size, "right", seed=1)

    def grads(fn):
        llama.zero_grad()
        loss = -(fn(ids, attn, target) * target).sum() / target.sum()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in llama.named_parameters() if p.grad is not None}

    loss_c, g_c = grads(lambda *a: target_logprobs(llama, *a, chunk_size=3))
    loss_p, g_p = grads(lambda *a: plain_target_logprobs(llama, *a))
    llama.zero_grad()
    torch.testing.assert_close(loss_c, loss_p, atol=ATOL, rtol=0)
    assert g_c.keys() == g_p.keys() and len(g_c) == len(list(llama.parameters()))
    for name in g_p:
        torch.testing.assert_close(g_c[name], g_p[name], atol=ATOL, rtol=0, msg=name)


def test_sequence_logprobs_sums_targets(llama):
    ids, attn, target = _batch(llama.config.vocab_size, "left")
    with torch.no_grad():
        total, count = sequence_logprobs(llama, ids, attn, target, chunk_size=2)
        plain = plain_target_logprobs(llama, ids, attn, target)
    assert count.tolist() == [5, 5, 5]
    torch.testing.assert_close(total, plain.sum(-1), atol=ATOL, rtol=0)


def test_first_position_target_is_refused(llama):
    ids, attn, target = _batch(llama.config.vocab_size, "right")
    target[0, 0] = True
    with pytest.raises(ValueError, match=r"target_mask\[:, 0\]"):
        target_logprobs(llama, ids, attn, target)


def test_gemma_softcap_chunked_equals_plain(gemma):
    ids, attn, target = _batch(gemma.config.vocab_size, "right", seed=2)
    with torch.no_grad():
        raw = gemma.get_output_embeddings()(gemma.model(input_ids=ids, attention_mask=attn).last_hidden_state)
        chunked = target_logprobs(gemma, ids, attn, target, chunk_size=4)
        plain = plain_target_logprobs(gemma, ids, attn, target)
    assert raw.abs().max() > 2 * gemma.config.final_logit_softcapping  # the cap is not a no-op here
    torch.testing.assert_close(chunked, plain, atol=ATOL, rtol=0)


def _logprobs_and_grads(model, fn):
    """fn()'s (·, T) log-probs and every weight's gradient of a loss on them."""
    model.zero_grad()
    logps = fn()
    (logps.sum(-1) * torch.linspace(1.0, 2.0, logps.shape[0])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return logps.detach(), grads


def _assert_same(got, expected):
    (logps, grads), (want, want_grads) = got, expected
    torch.testing.assert_close(logps, want, atol=ATOL, rtol=0)
    assert grads.keys() == want_grads.keys() and len(grads) > 0
    for name in want_grads:
        torch.testing.assert_close(grads[name], want_grads[name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_unpadded_rows_give_the_same_logprobs_and_gradients(which, request):
    """Each row through the body alone (gemma: rows longer than its sliding window) equals the padded batch."""
    model = request.getfixturevalue(which)
    ids, attn, target = _batch(model.config.vocab_size, "right", seed=3)
    expected = _logprobs_and_grads(model, lambda: target_logprobs(model, ids, attn, target, chunk_size=4))
    _assert_same(_logprobs_and_grads(model, lambda: target_logprobs(model, ids, attn, target, chunk_size=4,
                                                                    unpadded=True)), expected)
    with pytest.raises(ValueError, match="right-padded"):
        target_logprobs(model, *_batch(model.config.vocab_size, "left"), unpadded=True)


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_unpadded_shared_prompts_give_the_same_logprobs_and_gradients(which, request):
    """Four prompts (13, 4, 11 and 2 tokens, left-padded) with 3, 1, 2 and 2 completions of 1 to 6
    tokens, a prompt at a time without padding, equal the padded batch: the prompt and its longest
    completion as one sequence, the others on its cache past a hole; gemma: that only where the whole
    fits its sliding window of 8 (the 4- and 2-token prompts), elsewhere the completions cut to their longest."""
    model = request.getfixturevalue(which)
    gen = torch.Generator().manual_seed(4)
    vocab, width = model.config.vocab_size, 13
    prompt_ids = torch.zeros(4, width, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    for b, n in enumerate([13, 4, 11, 2]):
        prompt_ids[b, width - n:] = torch.randint(5, vocab, (n,), generator=gen)
        prompt_mask[b, width - n:] = 1
    prompt_index = torch.tensor([0, 1, 2, 0, 2, 0, 3, 3])
    completion_ids = torch.zeros(8, 6, dtype=torch.long)
    completion_mask = torch.zeros_like(completion_ids)
    for n, c in enumerate([6, 2, 1, 3, 4, 1, 2, 3]):
        completion_ids[n, :c] = torch.randint(5, vocab, (c,), generator=gen)
        completion_mask[n, :c] = 1
    args = (model, prompt_ids, prompt_mask, completion_ids, completion_mask, 4, prompt_index)
    expected = _logprobs_and_grads(model, lambda: shared_prompt_logprobs(*args))
    _assert_same(_logprobs_and_grads(model, lambda: shared_prompt_logprobs(*args, unpadded=True)), expected)
    with pytest.raises(ValueError, match="prefix_ids"):
        shared_prompt_logprobs(*args, prefix_ids=torch.tensor([7, 8]), unpadded=True)


CANDIDATES = [[40, 41, 42], [50], [60, 61, 62, 63, 64, 65], [40, 41], [70, 71, 72, 73]]


@pytest.mark.parametrize("which", ["llama", "gemma"])
def test_score_candidates_equals_plain(which, request):
    model = request.getfixturevalue(which)
    prompt = list(range(10, 31))  # longer than gemma's sliding window of 8
    fast, n_fast = score_candidates(model, prompt, CANDIDATES)
    plain, n_plain = score_candidates_plain(model, prompt, CANDIDATES)
    assert n_fast.tolist() == n_plain.tolist() == [3, 1, 6, 2, 4]
    assert fast.shape == (len(CANDIDATES),) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)


def test_score_candidates_single_tokens_and_empty(llama):
    fast, _ = score_candidates(llama, [5, 6, 7], [[8], [9]])
    plain, _ = score_candidates_plain(llama, [5, 6, 7], [[8], [9]])
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=0)
    scores, counts = score_candidates(llama, [5, 6, 7], [])
    assert scores.shape == counts.shape == (0,)


def test_zero_token_candidate_is_refused(llama):
    with pytest.raises(ValueError, match="candidate 1 has no tokens"):
        score_candidates(llama, [5, 6, 7], [[8, 9], [], [10]])
