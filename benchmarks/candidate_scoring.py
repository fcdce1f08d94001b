"""Multiple-choice candidate scoring: one shared prompt cache (score_candidates) against one forward of
prompt + candidate per candidate (score_candidates_plain).

Prompts are 5-shot SciQ question answering ("Question: ...\\nAnswer: ..." blocks, then the target
question and "Answer:"); the C candidates are the target's answer and C-1 other SciQ answers, each
tokenized with a leading space. Every prompt and candidate is tokenized before any timer starts; both
methods are warmed up once; each timing is repeated ``--repeats`` times with the order of the methods
rotated, and the median is reported. The accuracy line (argmax of the length-normalised score picks the
right answer) is a sanity check that the model and prompts are real, not part of the comparison.

    python benchmarks/candidate_scoring.py [--model smollm2-135m-instruct] [--n 30] [--candidates 6]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

# spinning OpenMP waits make a busy shared machine's cores a bottleneck; the same for both methods.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read_sciq(path: Path) -> list[tuple[str, str]]:
    """(question, answer) pairs from blocks of "question\\nanswer" separated by blank lines."""
    pairs = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if len(lines) >= 2:
            pairs.append((" ".join(lines[:-1]), lines[-1]))
    return pairs


def build_examples(pairs: list[tuple[str, str]], n: int, n_candidates: int, shots: int,
                   seed: int) -> list[tuple[str, list[str], int]]:
    """(prompt, candidate answers, index of the right one) for ``n`` target questions."""
    rng = random.Random(seed)
    order = rng.sample(range(len(pairs)), n * (shots + 1))
    answers = sorted({a for _, a in pairs})
    examples = []
    for k in range(n):
        idx = order[k * (shots + 1):(k + 1) * (shots + 1)]
        demos = "".join(f"Question: {pairs[i][0]}\nAnswer: {pairs[i][1]}\n\n" for i in idx[:shots])
        question, answer = pairs[idx[shots]]
        others = rng.sample([a for a in answers if a != answer], n_candidates - 1)
        right = rng.randrange(n_candidates)
        candidates = others[:right] + [answer] + others[right:]
        examples.append((f"{demos}Question: {question}\nAnswer:", candidates, right))
    return examples


def run(fn, model, encoded) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    sums, counts = [], []
    for prompt_ids, cand_ids in encoded:
        s, c = fn(model, prompt_ids, cand_ids)
        sums.append(s)
        counts.append(c)
    return sums, counts


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from weaks2strong.models.lm_logprobs import score_candidates, score_candidates_plain
    from weaks2strong.zoo import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n", type=int, default=30, help="target questions")
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "sciq" / "train.txt"))
    parser.add_argument("--out", type=Path, default=None,
                        help="the markdown it writes (default: docs/results/candidate_scoring.md)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    examples = build_examples(read_sciq(Path(args.data)), args.n, args.candidates, args.shots, args.seed)
    encoded = [(tok(prompt, add_special_tokens=False).input_ids,
                [tok(" " + c, add_special_tokens=False).input_ids for c in cands]) for prompt, cands, _ in examples]
    prompt_lens = [len(p) for p, _ in encoded]
    cand_lens = [len(c) for _, cands in encoded for c in cands]
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    print(f"model={args.model} examples={len(encoded)} candidates={args.candidates} "
          f"prompt_tokens={min(prompt_lens)}-{max(prompt_lens)} (mean {statistics.mean(prompt_lens):.0f}) "
          f"candidate_tokens={min(cand_lens)}-{max(cand_lens)} threads={args.threads}")

    methods = {"score_candidates": score_candidates, "score_candidates_plain": score_candidates_plain}
    for fn in methods.values():  # warm-up
        run(fn, model, encoded[:2])
    times: dict[str, list[float]] = {name: [] for name in methods}
    results = {}
    names = list(methods)
    for r in range(args.repeats):
        for name in names[r % 2:] + names[:r % 2]:
            start = time.perf_counter()
            results[name] = run(methods[name], model, encoded)
            times[name].append(time.perf_counter() - start)

    fast, plain = results["score_candidates"], results["score_candidates_plain"]
    diff = max((f - p).abs().max().item() for f, p in zip(fast[0], plain[0]))
    assert all(torch.equal(f, p) for f, p in zip(fast[1], plain[1])), "token counts differ"
    right = [ex[2] for ex in examples]
    accuracy = statistics.mean(float((s / c).argmax().item() == r) for s, c, r in zip(fast[0], fast[1], right))

    print(f"\n{'method':<24}{'seconds':>10}{'examples/s':>12}")
    for name in names:
        sec = statistics.median(times[name])
        print(f"{name:<24}{sec:>10.2f}{len(encoded) / sec:>12.2f}")
    print(f"length-normalised accuracy: {accuracy:.3f} (chance {1 / args.candidates:.3f})\n")
    speedup = statistics.median(times["score_candidates_plain"]) / statistics.median(times["score_candidates"])
    print(f"speedup={speedup:.2f} max_abs_diff={diff:.2e} candidates={args.candidates} examples={len(encoded)}")
    record.write("candidate_scoring", "Candidate scoring: a shared prompt cache against one forward per candidate",
                 args.out)


if __name__ == "__main__":
    main()
