"""Per-token log-probabilities of completions under a causal LM, without the (B, T, V) logits.

A causal LM's head turns every position's hidden state into V logits; for a 262k-token vocabulary
(Gemma 3) the fp32 logits of a batch dwarf the rest of a training step's activations. A loss on
completion tokens needs only the log-prob of each completion token, so ``target_logprobs`` runs the
decoder body, keeps the hidden states that predict a completion token, and projects them a chunk at a
time under activation checkpointing: backward then holds one chunk's (chunk, V) logits at a time.

``score_candidates`` ranks C answers to one prompt with one forward of the prompt whose key/value cache
is shared by the C candidates, instead of C forwards of prompt + answer.

``unpadded``: each row (each prompt with its completions) runs through the body alone, without
padding, for a CPU, where every padded position costs what a real one does. The rows share one lookup
of the token table and one pass of the head, so a trained table gets one dense gradient per batch, not
one per row.

Scores are summed log-probs with their token counts; a length-normalised score (sum / n_tokens) is the
caller's choice. The ``plain_*`` functions are the straightforward references that the fast ones are
tested against.
"""
from __future__ import annotations

import copy
import inspect

import torch
from torch.utils.checkpoint import checkpoint


def _text_config(model):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _scale_logits(model, logits: torch.Tensor) -> torch.Tensor:
    """The logit transforms that some families apply after the head, in the order and dtype of their
    own forward (the softcap of Gemma 2/3, ``cap · tanh(z / cap)``; Cohere's ``logit_scale``; Granite's
    ``logits_scaling``), so that our log-probs are the model's."""
    config = _text_config(model)
    if getattr(config, "logits_scaling", None) not in (None, 1, 1.0):
        logits = logits / config.logits_scaling
    if getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        logits = logits * config.logit_scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _decoder_body(model):
    """The module that maps input ids to the last hidden states (``LlamaModel`` inside
    ``LlamaForCausalLM``, ``Gemma3TextModel`` inside ``Gemma3ForCausalLM``). A peft
    model is looked into: its adapters live inside the wrapped model's layers."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    body = getattr(model, model.base_model_prefix, None)
    if body is None or body is model:
        body = model.get_decoder()
    if body is model:
        raise ValueError(f"{type(model).__name__} has no decoder body separate from its LM head")
    return body


def _check_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    if input_ids.dim() != 2 or target_mask.shape != input_ids.shape or attention_mask.shape != input_ids.shape:
        raise ValueError(f"input_ids, attention_mask and target_mask must share one (B, T) shape, got "
                         f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(target_mask.shape)}")
    target_mask = target_mask.bool()
    if target_mask[:, 0].any():
        raise ValueError("target_mask[:, 0] must be False: the first token of a row has no context to predict it")
    if (target_mask & ~attention_mask.bool()).any():
        raise ValueError("target_mask marks padding (positions where attention_mask is 0)")
    return target_mask


def _head_logprobs(model, states: torch.Tensor, labels: torch.Tensor, chunk_size: int,
                   rows: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) float32 log p(labels[n] | states[rows[n]]) through the LM head (``rows`` defaults to n),
    ``chunk_size`` states at a time. Labels that read one state (the K verbalizers' first tokens after
    one prompt) share its V logits. With several chunks each is checkpointed: neither forward nor
    backward holds more than one (chunk, V) block. A lone chunk is not: the head's backward runs
    before the body's, so its block is freed as early as a recomputed one would be, at no second forward."""
    head = model.get_output_embeddings()
    rows = torch.arange(labels.shape[0], device=labels.device) if rows is None else rows

    def chunk_logprobs(h: torch.Tensor, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # log_softmax, not z_y - logsumexp(z): it subtracts the max before rounding, which matters when
        # logits reach ~100s (Gemma 3: z_y - lse at |z| ~ 180 is off by ~5e-5)
        logprobs = _scale_logits(model, head(h)).float().log_softmax(-1)  # (m, V)
        return logprobs[r, y]  # (n,)

    starts = range(0, states.shape[0], chunk_size)
    out = states.new_zeros(labels.shape[0], dtype=torch.float32)  # (N,)
    for i in starts:
        picks = (rows >= i) & (rows < i + chunk_size)  # (N,) the labels that read this chunk's states
        args = (states[i:i + chunk_size], rows[picks] - i, labels[picks])
        piece = checkpoint(chunk_logprobs, *args, use_reentrant=False) if len(starts) > 1 else chunk_logprobs(*args)
        out = out.masked_scatter(picks, piece)
    return out


def target_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor,
                    chunk_size: int = 1024, unpadded: bool = False) -> torch.Tensor:
    """(B, T) float32: log p_θ(input_ids[b, t] | input_ids[b, :t]) where target_mask[b, t], 0 elsewhere.

    Equal to ``plain_target_logprobs`` (to fp32 rounding), but the head sees only the N positions that
    predict a target (hidden[b, t-1] predicts input_ids[b, t]), ``chunk_size`` at a time, several chunks
    each checkpointed, so that neither forward nor backward holds more than one (chunk, V) block of logits.
    Gradients flow to the body and the head. Length-normalising (sum / count) is the caller's business.
    ``unpadded``: each (right-padded) row through the body alone, cut to its length.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    target_mask = _check_masks(input_ids, attention_mask, target_mask)  # (B, T)
    predicts = target_mask[:, 1:]  # (B, T-1): position t-1 predicts a target at t
    if unpadded:
        lengths = attention_mask.sum(-1)  # (B,)
        if (attention_mask != (torch.arange(input_ids.shape[1], device=input_ids.device) < lengths[:, None])).any():
            raise ValueError("unpadded needs right-padded rows: each row's tokens first, then its padding")
        # one lookup for the batch: the table's gradient is then one dense (V, H) block, not one per row
        embeds = model.get_input_embeddings()(input_ids)  # (B, T, H)
        body = _decoder_body(model)
        states = torch.cat([embeds.new_zeros(0, embeds.shape[-1])] + [
            body(inputs_embeds=embeds[b:b + 1, :n], attention_mask=attention_mask[b:b + 1, :n],
                 use_cache=False).last_hidden_state[0, :-1][predicts[b, :n - 1]]
            for b, n in enumerate(lengths.tolist()) if n > 1])  # (N, H) in row-major order
    else:
        hidden = _decoder_body(model)(input_ids=input_ids, attention_mask=attention_mask,
                                      use_cache=False).last_hidden_state  # (B, T, H)
        states = hidden[:, :-1][predicts]  # (N, H)
    labels = input_ids[:, 1:][predicts]  # (N,)
    picked = _head_logprobs(model, states, labels, chunk_size)  # (N,)
    # row-major order of the True entries of target_mask == row-major order of `predicts`
    return states.new_zeros(target_mask.shape, dtype=torch.float32).masked_scatter(target_mask, picked)  # (B, T)


def shared_prompt_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                           completion_mask: torch.Tensor, chunk_size: int = 1024,
                           prompt_index: torch.Tensor | None = None,
                           prefix_ids: torch.Tensor | None = None, unpadded: bool = False) -> torch.Tensor:
    """(N, C) float32: log p_θ(completion token | prompt, earlier completion tokens) where
    completion_mask, 0 elsewhere, with each prompt run through the body once for all its completions.

    prompt_ids (B, P) left-padded; completion_ids (N, C) right-padded, row n continuing prompt
    ``prompt_index[n]`` (N,). By default N = R·B and completion r of prompt b is row r·B + b (a
    preference batch: R = 2, the B chosen then the B rejected); a verbalizer batch passes the prompt
    of each (example, class) slot. ``prefix_ids`` (L,): tokens that every prompt starts with (the
    task's instruction), read once for the batch; prompt_ids then hold what follows it.

    The prompts' key/value cache is computed with gradients and gathered for the N completions, so the
    result and its gradients equal ``target_logprobs`` on the N concatenated sequences, at the cost of
    B prompts instead of N. Differentiable; the head runs as in ``target_logprobs``, once on a prompt's
    last state for all its completions' first tokens. ``unpadded``: each prompt with its completions
    alone and without padding (``_lone_prompt_states``; no ``prefix_ids``).
    """
    B, P = prompt_ids.shape  # noqa: N806
    if prompt_index is None:
        R = completion_ids.shape[0] // B  # noqa: N806
        if completion_ids.shape[0] != R * B:
            raise ValueError(f"completion_ids {tuple(completion_ids.shape)} must be (R·B, C) for {B} prompts")
        prompt_index = torch.arange(B, device=prompt_ids.device).repeat(R)  # (R·B,) rows r·B + b
    if prompt_index.shape != completion_ids.shape[:1] or completion_mask.shape != completion_ids.shape:
        raise ValueError(f"completion_ids {tuple(completion_ids.shape)} needs a completion_mask of its shape and "
                         f"one prompt_index per row, got {tuple(completion_mask.shape)} and "
                         f"{tuple(prompt_index.shape)}")
    if not prompt_mask[:, -1].all():
        raise ValueError("prompt_ids must be left-padded: every prompt's last token at position P - 1")
    target = completion_mask.bool()  # (N, C)
    if unpadded:
        states, rows = _unpadded_prompt_states(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                               prompt_index, prefix_ids)
    else:
        states, rows = _prompt_states(model, prompt_ids, prompt_mask, completion_ids, completion_mask, prompt_index,
                                      prefix_ids)
    picked = _head_logprobs(model, states, completion_ids[target], chunk_size, rows[target])  # (n,)
    return states.new_zeros(target.shape, dtype=torch.float32).masked_scatter(target, picked)  # (N, C)


def _prompt_states(model, prompt_ids, prompt_mask, completion_ids, completion_mask, prompt_index, prefix_ids,
                   embeds: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``shared_prompt_logprobs`` up to the head: the states that predict the targets (S, H) and, for
    each completion token (N, C), the row of its state (where completion_mask). ``embeds``: the prompts'
    and the completions' input embeddings, looked up by the caller."""
    B, P = prompt_ids.shape  # noqa: N806
    body, device = _decoder_body(model), prompt_ids.device
    cache, seen = None, prompt_mask.new_zeros(B, 0)  # (B, L): the prefix, as the prompts see it
    if prefix_ids is not None and len(prefix_ids):
        window = getattr(_text_config(model), "sliding_window", None)
        if window is None or len(prefix_ids) + P + completion_ids.shape[1] <= window:
            # the prefix once; the padding after it is a hole that a sliding window would count,
            # so this path only runs where every window spans the whole sequence
            ids = prefix_ids[None]  # (1, L)
            cache = returned_cache(body(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                                        position_ids=torch.arange(ids.shape[1], device=device)[None]))
            cache.reorder_cache(torch.zeros(B, dtype=torch.long, device=device))  # (B, ...)
            seen = prompt_mask.new_ones(B, ids.shape[1])
        else:  # each prompt whole, left-padded again: a stable sort puts every padding token first
            prompt_ids = torch.cat([prefix_ids.expand(B, -1), prompt_ids], dim=1)
            prompt_mask = torch.cat([torch.ones_like(prompt_ids[:, :len(prefix_ids)]), prompt_mask], dim=1)
            order = prompt_mask.argsort(dim=1, stable=True)  # (B, L+P)
            prompt_ids, prompt_mask = prompt_ids.gather(1, order), prompt_mask.gather(1, order)
    # left padding: no hole between a prompt and its completion, so a sliding window (Gemma) counts
    # the same tokens as on the unpadded sequence; positions count from each row's first real token
    positions = seen.shape[1] + (prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    seen = torch.cat([seen, prompt_mask], dim=1)  # (B, L+P)
    tokens = {"input_ids": prompt_ids} if embeds is None else {"inputs_embeds": embeds[0]}
    first = body(**tokens, attention_mask=seen, position_ids=positions, use_cache=True,
                 **({cache_kwarg(model): cache} if cache is not None else {}))
    # the state before each target token: a prompt's last state (one per prompt, read by all its
    # completions' first tokens), then each completion's own states (its last token predicts nothing)
    target = completion_mask.bool()  # (N, C)
    later = target.clone()
    later[:, 0] = False
    states = first.last_hidden_state[:, -1]  # (B, H)
    if completion_ids.shape[1] > 1:
        cache = returned_cache(first)
        cache.reorder_cache(prompt_index)  # (N, ...): each completion row gets its prompt's keys and values
        feed = completion_ids[:, :-1]  # (N, C-1)
        after = seen.sum(-1)[prompt_index, None] + torch.arange(feed.shape[1], device=device)  # (N, C-1)
        mask = torch.cat([seen[prompt_index], completion_mask[:, :-1].to(seen.dtype)], dim=1)  # (N, L+P+C-1)
        tokens = {"input_ids": feed} if embeds is None else {"inputs_embeds": embeds[1][:, :-1]}
        hidden = body(**tokens, attention_mask=mask, position_ids=after,
                      use_cache=True, **{cache_kwarg(model): cache}).last_hidden_state  # (N, C-1, H)
        states = torch.cat([states, hidden[later[:, 1:]]])  # (B + n', H)
    rows = torch.empty(target.shape, dtype=torch.long, device=device)  # (N, C): each target's state
    rows[:, 0] = prompt_index
    rows[later] = B + torch.arange(int(later.sum()), device=device)
    return states, rows


def _unpadded_prompt_states(model, prompt_ids, prompt_mask, completion_ids, completion_mask, prompt_index,
                            prefix_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """``_prompt_states`` a prompt at a time (``_lone_prompt_states``), each without padding; one
    embedding lookup for all."""
    if prefix_ids is not None and len(prefix_ids):
        raise ValueError("unpadded takes no prefix_ids: each prompt would read the prefix again")
    P, C = prompt_ids.shape[1], completion_ids.shape[1]  # noqa: N806
    prompt_lengths, lengths = prompt_mask.sum(-1), completion_mask.sum(-1)  # (B,), (N,)
    positions = torch.arange(max(P, C), device=prompt_ids.device)
    if (prompt_mask != (positions[:P] >= P - prompt_lengths[:, None])).any() or \
            (completion_mask != (positions[:C] < lengths[:, None])).any():
        raise ValueError("unpadded needs left-padded prompts and right-padded completions, with no holes")
    # one lookup for the batch: the table's gradient is then one dense (V, H) block, not one per prompt
    embed = model.get_input_embeddings()
    prompt_embeds, completion_embeds = embed(prompt_ids), embed(completion_ids)  # (B, P, H), (N, C, H)
    rows = torch.zeros(completion_ids.shape, dtype=torch.long, device=prompt_ids.device)  # (N, C)
    pieces, seen = [prompt_embeds.new_zeros(0, prompt_embeds.shape[-1])], 0
    window = getattr(_text_config(model), "sliding_window", None)
    for b, n in enumerate(prompt_lengths.tolist()):
        mine = (prompt_index == b).nonzero()[:, 0]  # this prompt's completion rows
        ordered = mine[lengths[mine].argsort(descending=True, stable=True)]  # the longest first
        cuts = lengths[ordered].tolist()
        c = cuts[0] if cuts else 0
        if c == 0:  # no targets read this prompt
            continue
        if window is None or n + c + max(cuts[1:], default=0) <= window:
            states, local = _lone_prompt_states(model, prompt_embeds[b:b + 1, P - n:], completion_mask[ordered, :c],
                                                completion_embeds[ordered, :c])
            ordered = ordered.tolist()
        else:  # a hole would count in a sliding window: the completions cut to their longest instead
            states, local = _prompt_states(
                model, prompt_ids[b:b + 1, P - n:], prompt_mask[b:b + 1, P - n:], completion_ids[mine, :c],
                completion_mask[mine, :c], torch.zeros_like(mine), None,
                (prompt_embeds[b:b + 1, P - n:], completion_embeds[mine, :c]))
            ordered = mine
        rows[ordered, :c] = local + seen
        pieces.append(states)
        seen += states.shape[0]
    return torch.cat(pieces), rows


def _lone_prompt_states(model, prompt_embeds: torch.Tensor, mask: torch.Tensor,
                        embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt (1, n, H) and its k completions (k, c) right-padded, the longest first, without a
    padded position: the prompt and the longest completion run as one sequence, the others on its
    cache with the longest one's keys masked out (a hole: positions go on from the prompt's end).
    Returns the states that predict the targets (S, H) and each completion token's row in them (k, c)."""
    body, n, device = _decoder_body(model), prompt_embeds.shape[1], prompt_embeds.device
    lengths = mask.sum(-1).tolist()
    c, rest = lengths[0], max(lengths[1:], default=0)  # the longest, the longest of the others
    first = body(inputs_embeds=torch.cat([prompt_embeds, embeds[:1, :c]], dim=1),
                 attention_mask=mask.new_ones(1, n + c), use_cache=rest > 1)
    states = first.last_hidden_state[0, n - 1:n + c - 1]  # (c, H): the prompt's last, then the longest's own
    rows = torch.zeros(mask.shape, dtype=torch.long, device=device)  # (k, c); the others' first tokens read 0
    rows[0] = torch.arange(mask.shape[1], device=device)
    if rest > 1:
        cache = returned_cache(first)
        if len(lengths) > 2:
            cache.reorder_cache(torch.zeros(len(lengths) - 1, dtype=torch.long, device=device))  # (k-1, ...)
        hole = torch.cat([mask.new_ones(len(lengths) - 1, n), mask.new_zeros(len(lengths) - 1, c),
                          mask[1:, :rest - 1]], dim=1)  # (k-1, n + c + rest - 1)
        after = n + torch.arange(rest - 1, device=device).expand(len(lengths) - 1, -1)  # (k-1, rest-1)
        hidden = body(inputs_embeds=embeds[1:, :rest - 1], attention_mask=hole, position_ids=after, use_cache=True,
                      **{cache_kwarg(model): cache}).last_hidden_state  # (k-1, rest-1, H)
        later = mask[1:, 1:rest].bool()  # (k-1, rest-1): the others' tokens after their first
        placed = torch.zeros(later.shape, dtype=torch.long, device=device)
        placed[later] = c + torch.arange(int(later.sum()), device=device)
        rows[1:, 1:rest] = placed
        states = torch.cat([states, hidden[later]])
    return states, rows


def plain_target_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          target_mask: torch.Tensor) -> torch.Tensor:
    """The reference for ``target_logprobs``: the model's full (B, T, V) logits, log-softmaxed in fp32."""
    target_mask = _check_masks(input_ids, attention_mask, target_mask)  # (B, T)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)
    logprobs = logits[:, :-1].float().log_softmax(-1)  # (B, T-1, V)
    picked = logprobs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    out = torch.cat([picked.new_zeros(picked.shape[0], 1), picked], dim=1)  # (B, T)
    return out * target_mask


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor,
                      chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's summed target log-prob (B,) and its number of target tokens (B,); divide for the
    length-normalised score."""
    logprobs = target_logprobs(model, input_ids, attention_mask, target_mask, chunk_size)  # (B, T)
    return logprobs.sum(-1), target_mask.bool().sum(-1)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _check_candidates(prompt_ids: list[int], candidates: list[list[int]]) -> None:
    if len(prompt_ids) == 0:
        raise ValueError("prompt_ids is empty: the first candidate token needs at least one prompt token")
    for i, cand in enumerate(candidates):
        if len(cand) == 0:
            raise ValueError(f"candidate {i} has no tokens")


def cache_kwarg(model) -> str:
    """The name under which this transformers version takes a key/value cache (``cache`` since 5.x
    renamed ``past_key_values``). A peft model passes it on to the model it wraps."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out):
    """The key/value cache a forward returned (``cache`` in transformers 5, ``past_key_values`` before)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


@torch.no_grad()
def score_candidates(model, prompt_ids: list[int], candidates: list[list[int]], prefix_cache=None,
                     prefix_length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_j log p_θ(c_j | prompt, c_<j) of each candidate (C,) float32, and its token count (C,).

    One forward of the prompt; its key/value cache is repeated C times and one batched forward of the
    right-padded candidates (positions continuing after the prompt) scores all their later tokens. The
    first token of every candidate is scored by the prompt's last logits. The model's train/eval mode is
    left as it is (put it in eval mode for deterministic scores). Length-normalising (sum / count) is
    the caller's business.

    ``prefix_cache`` (with ``prefix_length`` tokens): the cache of a prefix shared by many prompts
    (k-shot demonstrations), computed once by the caller; ``prompt_ids`` then continue after it. It
    is copied, never changed.
    """
    _check_candidates(prompt_ids, candidates)
    device = _model_device(model)
    counts = torch.tensor([len(c) for c in candidates], dtype=torch.long, device=device)  # (C,)
    if not candidates:
        return torch.zeros(0, dtype=torch.float32, device=device), counts
    n_prompt, n_cand, longest = len(prompt_ids), len(candidates), max(len(c) for c in candidates)
    tokens = torch.zeros(n_cand, longest, dtype=torch.long, device=device)  # (C, L) right-padded
    mask = torch.zeros(n_cand, longest, dtype=torch.long, device=device)  # (C, L)
    for i, cand in enumerate(candidates):
        tokens[i, :len(cand)] = torch.tensor(cand, dtype=torch.long)
        mask[i, :len(cand)] = 1

    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, P)
    extra = {}
    if prefix_cache is not None:
        extra = {cache_kwarg(model): copy.deepcopy(prefix_cache),
                 "position_ids": torch.arange(prefix_length, prefix_length + n_prompt, device=device)[None]}
    out = model(input_ids=prompt, attention_mask=prompt.new_ones(1, prefix_length + n_prompt), use_cache=True,
                logits_to_keep=1, **extra)
    first = out.logits[0, -1].float().log_softmax(-1)[tokens[:, 0]]  # (C,)
    if longest == 1:
        return first, counts

    cache = returned_cache(out)
    cache.batch_repeat_interleave(n_cand)
    feed = tokens[:, :-1]  # (C, L-1): the last token of the longest candidate predicts nothing we need
    n_seen = prefix_length + n_prompt
    full_mask = torch.cat([mask.new_ones(n_cand, n_seen), mask[:, :-1]], dim=1)  # (C, P0+P+L-1)
    positions = torch.arange(n_seen, n_seen + longest - 1, device=device).expand(n_cand, -1)  # (C, L-1)
    logits = model(input_ids=feed, attention_mask=full_mask, position_ids=positions, use_cache=True,
                   **{cache_kwarg(model): cache}).logits  # (C, L-1, V)
    rest = logits.float().log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)  # (C, L-1)
    return first + (rest * mask[:, 1:]).sum(-1), counts


@torch.no_grad()
def score_candidates_plain(model, prompt_ids: list[int],
                           candidates: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference for ``score_candidates``: one forward of prompt + candidate per candidate."""
    _check_candidates(prompt_ids, candidates)
    device = _model_device(model)
    counts = torch.tensor([len(c) for c in candidates], dtype=torch.long, device=device)  # (C,)
    sums = []
    for cand in candidates:
        ids = torch.tensor([prompt_ids + cand], dtype=torch.long, device=device)  # (1, P+n)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits  # (1, P+n, V)
        logprobs = logits[0, len(prompt_ids) - 1:-1].float().log_softmax(-1)  # (n, V)
        sums.append(logprobs.gather(-1, ids[0, len(prompt_ids):, None]).sum())
    return torch.stack(sums).float() if sums else torch.zeros(0, dtype=torch.float32, device=device), counts
