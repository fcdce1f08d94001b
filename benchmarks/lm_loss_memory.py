"""Peak memory of one training step of a completion loss: target_logprobs (chunked, checkpointed LM
head on the target positions only) against plain_target_logprobs (the model's full (B, T, V) logits).

The step is forward + backward of L = -mean of the target tokens' log-probs, on ``--batch`` rows of
``--tokens`` tokens of SciQ text (BOS + consecutive text) whose last ``--targets`` tokens are the
targets. Gemma-3-270M's 262k-token vocabulary makes the fp32 logits of 8 × 128 tokens 1.07 GB.

Measurement: each variant runs in a fresh subprocess (so neither inherits the other's allocator
state); after the model is loaded the process's peak RSS (VmHWM) is reset through
/proc/self/clear_refs, and the step's peak is VmHWM after the step minus VmRSS before it (the weights
are read once before, so that pages which loading left memory-mapped do not count as the step's). On CUDA,
torch.cuda.max_memory_allocated minus the memory allocated before the step.

A whole step's peak also holds what neither variant can shed: the decoder body's activations and the
parameter gradients (1.07 GB for Gemma-3-270M in fp32). A third variant, ``body``, runs the same step
with a loss on the last hidden states instead (no LM head): the peak above it (``over_body_mb``) is
what the loss itself costs. ``--body-checkpointing`` turns on the model's own gradient checkpointing
for the body, the usual companion of a memory-saving loss. ``--random`` builds the architecture from
the folder's config with random weights (enough for memory; the losses then compare random models).

    python benchmarks/lm_loss_memory.py [--model gemma3-270m] [--random] [--body-checkpointing]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MB = 2 ** 20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def text_batch(tok, path: Path, batch: int, tokens: int):
    """(batch, tokens) ids: BOS, then consecutive stretches of the text."""
    import torch

    ids = tok(path.read_text(encoding="utf-8")[:200_000], add_special_tokens=False).input_ids
    body = tokens - 1
    if len(ids) < batch * body:
        raise ValueError(f"{path} has {len(ids)} tokens, fewer than {batch} x {body}")
    rows = [[tok.bos_token_id] + ids[b * body:(b + 1) * body] for b in range(batch)]
    return torch.tensor(rows, dtype=torch.long)


def child(args) -> dict:
    """One step of one variant; returns the measurements."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from weaks2strong.models.lm_logprobs import plain_target_logprobs, target_logprobs
    from weaks2strong.zoo import resolve_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = resolve_model(args.model)
    if args.random:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if args.freeze_embeddings:  # as the student's default (student.model.freeze_embeddings): table and tied head frozen
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            module.weight.requires_grad_(False)
    if args.body_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.to(args.device).train()
    ids = text_batch(AutoTokenizer.from_pretrained(path), Path(args.data), args.batch, args.tokens)
    ids = ids.to(args.device)  # (B, T)
    attn = torch.ones_like(ids)  # (B, T)
    target = torch.zeros_like(ids, dtype=torch.bool)
    target[:, -args.targets:] = True  # (B, T)
    n_grad = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    with torch.no_grad():  # fault in weights that loading left memory-mapped, so they count before the step
        sum(float(p.sum()) for p in model.parameters())

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset = _reset_peak_rss()
        before = _status_kb("VmRSS") * 1024
    start = time.perf_counter()
    if args.variant == "body":
        body = getattr(model, model.base_model_prefix)
        loss = body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state.mean()
    else:
        fn = target_logprobs if args.variant == "chunked" else plain_target_logprobs
        kwargs = {"chunk_size": args.chunk_size} if args.variant == "chunked" else {}
        logprobs = fn(model, ids, attn, target, **kwargs)  # (B, T)
        loss = -logprobs.sum() / target.sum()
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = (_status_kb("VmHWM") if reset else _ru_maxrss_kb()) * 1024 - before
    return {"variant": args.variant, "loss": loss.item(), "peak_mb": peak / MB, "grads_mb": n_grad / MB,
            "seconds": time.perf_counter() - start, "peak_reset": cuda or reset}


def _ru_maxrss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux; includes the loading peak


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--random", action="store_true", help="random weights from the folder's config")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--targets", type=int, default=32, help="the last this many tokens of each row")
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--body-checkpointing", action="store_true", help="gradient checkpointing in the body")
    parser.add_argument("--freeze-embeddings", action="store_true", help="the student's default: no table gradient")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "sciq" / "train.txt"))
    parser.add_argument("--out", type=Path, default=None,
                        help="the markdown it writes (default: docs/results/lm_loss_memory.md)")
    parser.add_argument("--variant", choices=["body", "plain", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(child(args)))
        return

    results = {}
    for variant in ("body", "plain", "chunked"):
        cmd = [sys.executable, __file__, "--variant", variant] + sys.argv[1:]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"{variant} step failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    body, plain, chunked = results["body"], results["plain"], results["chunked"]
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    if not all(r["peak_reset"] for r in results.values()):
        print("warning: could not reset the peak RSS; peaks include model loading")

    print(f"model={args.model}{' (random weights)' if args.random else ''} device={args.device} "
          f"batch={args.batch}x{args.tokens} targets={args.targets}/row chunk_size={args.chunk_size} "
          f"body_checkpointing={args.body_checkpointing} threads={args.threads}")
    print(f"\n{'variant':<10}{'peak_mb':>10}{'over_body_mb':>14}{'loss':>14}{'seconds':>10}")
    for r in (body, plain, chunked):
        print(f"{r['variant']:<10}{r['peak_mb']:>10.0f}{r['peak_mb'] - body['peak_mb']:>14.0f}"
              f"{r['loss']:>14.6f}{r['seconds']:>10.1f}")
    print(f"(parameter gradients: {plain['grads_mb']:.0f} MB in every variant; body: loss = mean hidden state)\n")
    ratio = chunked["peak_mb"] / plain["peak_mb"]
    over = (chunked["peak_mb"] - body["peak_mb"]) / (plain["peak_mb"] - body["peak_mb"])
    print(f"peak_ratio={ratio:.3f} over_body_ratio={over:.3f} plain_peak_mb={plain['peak_mb']:.0f} "
          f"chunked_peak_mb={chunked['peak_mb']:.0f} body_peak_mb={body['peak_mb']:.0f} "
          f"loss_diff={abs(plain['loss'] - chunked['loss']):.2e}")
    record.write("lm_loss_memory", "Peak memory of one completion-loss step: chunked against plain logits", args.out)


if __name__ == "__main__":
    main()
