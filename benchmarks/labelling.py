"""Prompted-teacher labelling throughput: weaks2strong's PromptedLM against a plain batched loop.

The plain loop is what one writes first: pad a batch (left), ``model(**batch)``, read the last
position's logits, in the data's own order. PromptedLM sorts by length, runs the LM head on the
last position only, and encodes the shared prompt prefix once, reusing its key/value cache.
(``transformers.pipeline`` has no task that scores given next tokens, so it is not compared.)

    python benchmarks/labelling.py --n 512 --model smollm2-135m-instruct
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def plain_loop(tok, lm, prompts: list[str], verbalizer_ids: list[int], batch_size: int) -> np.ndarray:
    tok.padding_side = "left"
    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tok(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False)
            # positions from the attention mask, as generate() does, so left padding does not shift them
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logp = torch.log_softmax(lm(**batch).logits[:, -1].float(), -1)[:, verbalizer_ids]  # (B, K)
            out.append(torch.softmax(logp, -1).double().numpy())
    return np.concatenate(out)


def main() -> None:
    from weaks2strong.zoo import resolve_model
    from weaks2strong.tasks import load_task
    from weaks2strong.teachers.prompted import PromptedLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mirror", default=None)
    args = parser.parse_args()

    task = load_task("sst2", sizes={"weak_train": 8, "w2s_train": 8, "test": args.n}, mirror=args.mirror,
                     prompt="Is the sentiment of this movie review positive or negative? Answer with one word."
                            "\n\nReview: {text}", verbalizers=["Negative", "Positive"])
    fast = PromptedLM(args.model, batch_size=args.batch_size, progress=False)
    fast.fit(task)
    tok, lm = fast._load()
    prompts = fast.render(tok, task.prompts("test"))
    ids = [tok(v, add_special_tokens=False).input_ids[0] for v in task.verbalizers]
    rows = []
    timed = {}
    for name, run in [
        ("plain model(**batch) loop", lambda: plain_loop(tok, lm, prompts, ids, args.batch_size)),
        ("PromptedLM, no prefix cache", lambda: PromptedLM(args.model, batch_size=args.batch_size, reuse_prefix=False,
                                                           progress=False).predict_proba(task, "test")),
        ("PromptedLM (default)", lambda: fast.predict_proba(task, "test")),
    ]:
        start = time.perf_counter()
        probs = run()
        seconds = time.perf_counter() - start
        timed[name] = (probs, seconds)
    base_probs, base_seconds = timed["plain model(**batch) loop"]
    print(f"model={resolve_model(args.model)} n={args.n} batch_size={args.batch_size} "
          f"threads={torch.get_num_threads()}")
    print(f"{'method':32s} {'ex/s':>8s} {'speedup':>8s} {'max |Δp|':>10s}")
    for name, (probs, seconds) in timed.items():
        diff = float(np.abs(probs - base_probs).max())
        rows.append((name, args.n / seconds, base_seconds / seconds, diff))
        print(f"{name:32s} {args.n / seconds:8.1f} {base_seconds / seconds:8.2f} {diff:10.2e}")
    print(f"speedup_vs_plain={rows[-1][2]:.2f} ex_per_s={rows[-1][1]:.1f} plain_ex_per_s={rows[0][1]:.1f} "
          f"max_prob_diff={rows[-1][3]:.1e}")


if __name__ == "__main__":
    main()
