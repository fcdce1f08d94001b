"""Prompted-teacher labelling throughput: weaks2strong's PromptedLM against a plain batched loop.

The plain loop is what one writes first, made as cheap as it can be without PromptedLM's tricks:
pad a batch (left), ``model(**batch, logits_to_keep=1)`` so the LM head runs on the last position
only, read the verbalizers' logits, in the data's own order. PromptedLM also sorts by length (less
padding) and encodes the shared prompt prefix once, reusing its key/value cache.
(``transformers.pipeline`` has no task that scores given next tokens, so it is not compared.)

Fairness: every model and tokenizer is loaded before any timer starts; every method runs end to
end from the task's prompts (chat-template rendering, tokenization, forward passes, softmax); each
method is warmed up once (a few examples) before timing; each timing is repeated ``--repeats`` times
with the order of the methods rotated between repeats, and the median is reported.

    python benchmarks/labelling.py [--n 64] [--model smollm2-135m-instruct] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# spinning OpenMP waits make a busy shared machine's cores a bottleneck (see aggregate_crowd.py);
# the same for every method. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def plain_loop(tok, lm, render, raw_prompts: list[str], verbalizer_ids: list[int], batch_size: int) -> np.ndarray:
    prompts = render(tok, raw_prompts)
    tok.padding_side = "left"
    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False)
            # positions from the attention mask, as generate() does, so left padding does not shift them
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = lm(**batch, logits_to_keep=1).logits[:, -1].float()  # (B, V): last position only
            logp = torch.log_softmax(logits, -1)[:, verbalizer_ids]  # (B, K)
            out.append(torch.softmax(logp, -1).double().numpy())
    return np.concatenate(out)


def main() -> None:
    from weaks2strong.tasks import load_task
    from weaks2strong.teachers.prompted import PromptedLM
    from weaks2strong.zoo import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64,
                        help="test examples labelled per timing (default: ~2-3 min on 2 idle cores)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timings per method; the median is reported (>= 3)")
    parser.add_argument("--warmup", type=int, default=16, help="examples per method in the untimed warm-up")
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="the markdown it writes (default: docs/results/labelling.md)")
    args = parser.parse_args()

    task = load_task("sst2", sizes={"weak_train": 8, "w2s_train": 8, "val": 8, "test": args.n}, mirror=args.mirror,
                     prompt="Is the sentiment of this movie review positive or negative? Answer with one word."
                            "\n\nReview: {text}", verbalizers=["Negative", "Positive"])
    raw = task.prompts("test")

    # ---- everything loaded before any timer: one model, shared by all three methods
    fast = PromptedLM(args.model, batch_size=args.batch_size, progress=False)
    fast.fit(task)
    tok, lm = fast._load()
    no_prefix = PromptedLM(args.model, batch_size=args.batch_size, reuse_prefix=False, progress=False)
    no_prefix._lm = (tok, lm)  # same weights, no second load
    no_prefix.fit(task)
    ids = [tok(v, add_special_tokens=False).input_ids[0] for v in task.verbalizers]

    def prompted(teacher, prompts):
        return teacher._probs(tok, lm, task, teacher.render(tok, prompts), desc=None)

    methods = {
        "plain loop (logits_to_keep=1)": lambda p: plain_loop(tok, lm, fast.render, p, ids, args.batch_size),
        "PromptedLM, no prefix cache": lambda p: prompted(no_prefix, p),
        "PromptedLM (default)": lambda p: prompted(fast, p),
    }
    names = list(methods)

    # ---- warm-up: each method once on a few examples (lazy init, allocator, oneDNN kernels)
    warm = raw[: max(2, args.warmup)]
    for run in methods.values():
        run(warm)

    load_before = os.getloadavg()[0]
    # ---- timed repeats, order rotated: repeat r runs names[r:] + names[:r]
    seconds = {name: [] for name in names}
    probs = {}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            out = methods[name](raw)
            seconds[name].append(time.perf_counter() - start)
            if name in probs and not np.array_equal(out, probs[name]):
                # deterministic CPU inference should repeat exactly; note it if it does not
                probs[name + " (repeat drift)"] = out
            probs.setdefault(name, out)
    # sanity: the public path gives the same numbers as the _probs call timed above
    public = fast.predict_proba(task, "test")
    public_diff = float(np.abs(public - probs["PromptedLM (default)"]).max())

    base = names[0]
    median = {name: statistics.median(s) for name, s in seconds.items()}
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    print(f"model={resolve_model(args.model)} n={args.n} batch_size={args.batch_size} "
          f"threads={torch.get_num_threads()} repeats={args.repeats} (median; order rotated; warmed up; "
          f"models loaded outside the timers)")
    print(f"load average (1 min) before/after the timings: {load_before:.1f}/{os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (a shared machine: other jobs add noise, the rotation spreads it)")
    print(f"{'method':31s} {'ex/s':>8s} {'speedup':>8s} {'max |Δp|':>10s}   seconds per repeat")
    rows = {}
    for name in names:
        diff = float(np.abs(probs[name] - probs[base]).max())
        rows[name] = (args.n / median[name], median[base] / median[name], diff)
        runs = " ".join(f"{s:.2f}" for s in seconds[name])
        print(f"{name:31s} {rows[name][0]:8.1f} {rows[name][1]:8.2f} {diff:10.2e}   {runs}")
    drift = [k for k in probs if k.endswith("(repeat drift)")]
    if drift:
        print("note: outputs differed between repeats for: " + ", ".join(drift))
    print(f"(max |Δp| is against the plain loop; predict_proba vs the timed call: {public_diff:.1e})")
    fast_row = rows["PromptedLM (default)"]
    print(f"speedup_vs_plain={fast_row[1]:.2f} ex_per_s={fast_row[0]:.1f} plain_ex_per_s={rows[base][0]:.1f} "
          f"no_prefix_speedup={rows['PromptedLM, no prefix cache'][1]:.2f} max_prob_diff={fast_row[2]:.1e} "
          f"repeats={args.repeats} n={args.n}")
    record.write("labelling", "Prompted-teacher labelling throughput: PromptedLM against a plain batched loop",
                 args.out)


if __name__ == "__main__":
    main()
