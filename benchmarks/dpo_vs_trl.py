"""Our DPO step against TRL's DPOTrainer: the same model (SmolLM2-135M-Instruct), the same real
HH-RLHF harmless pairs (../shared/datasets/hh_harmless), batch 4, at most 256 tokens.

1. Loss: one TRL-collated batch, the policy moved off the reference (one SGD step on another batch),
   TRL's ``_compute_loss`` against ``preference_loss`` on our log-probs of the same tokens, laid out as
   each of our timed runs lays them out (2B padded sequences; a sequence at a time; a prompt with its
   two answers at a time); the largest difference is reported.
2. Speed: ``--steps`` + 1 optimiser steps, full fine-tuning (every weight, the token table too), fused
   AdamW (TRL's default optimiser) with gradients clipped at norm 1 (TRL's default), fp32 on CPU, steps
   per second of wall time for the whole fit, tokenising and the reference log-probs included: ours
   (the reference computed once before training) unpadded with each prompt run once for its two answers
   (``share_prompt``), and padded (the layout before unpadding), against TRL with
   ``precompute_ref_log_probs`` on and off (its trainer's construction, where it tokenises and
   precomputes, counted). Our prompts and answers are cut at 256 tokens each, so that we never read
   fewer tokens than TRL's ``max_length=256`` leaves it. The runs alternate ours and TRL's, each timed
   ``--repeats`` times (every other round in reverse order); a run's best time counts, the one that
   the machine's other jobs disturbed least. About 15 minutes on two cores at load 3.

TRL is needed here only: ``pip install --no-deps --target data/bench_pkgs trl==1.16.0 datasets dill
multiprocess xxhash``. OpenMP waits passively (a spinning thread only slows a shared machine). Prints
a table, then one line:
``speedup_vs_trl=… max_loss_diff=… ours_steps_per_s=… trl_steps_per_s=…``
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data" / "bench_pkgs")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads OpenMP

import torch  # noqa: E402

from weaks2strong.models.causal_lm import load_causal_lm  # noqa: E402
from weaks2strong.models.losses import preference_loss  # noqa: E402
from weaks2strong.models.preference import pair_logprobs  # noqa: E402
from weaks2strong.zoo import resolve_model  # noqa: E402

MARK = "\n\nAssistant:"


def hh_pairs(path: Path, n: int) -> list[dict]:
    """prompt = the dialogue up to its last assistant turn; chosen/rejected = that turn's two versions."""
    pairs = []
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            cut = row["chosen"].rfind(MARK) + len(MARK)
            prompt, chosen, rejected = row["chosen"][:cut], row["chosen"][cut:], row["rejected"][cut:]
            if row["rejected"][:cut] == prompt and chosen.strip() and rejected.strip() and chosen != rejected \
                    and len(prompt) < 600:
                pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            if len(pairs) == n:
                break
    return pairs


def trl_trainer(model, ref, tok, pairs, steps: int, precompute: bool, out: str):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=out, per_device_train_batch_size=4, max_length=256, max_steps=steps,
                     learning_rate=1e-6, beta=0.1, precompute_ref_log_probs=precompute, report_to=[],
                     logging_steps=1, save_strategy="no", use_cpu=True, dataloader_num_workers=0,
                     bf16=False, fp16=False, gradient_checkpointing=False, disable_tqdm=True, seed=0)
    return DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(pairs),
                      processing_class=tok)


def our_layouts(batch: dict) -> dict[str, dict]:
    """TRL's batch (2B right-padded prompt + answer rows, the chosen first) as our runs lay it out."""
    full = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "target_mask": batch["completion_mask"].bool()}
    starts = batch["completion_mask"].argmax(-1)  # (2B,) each row's first answer token
    lengths = batch["attention_mask"].sum(-1) - starts  # (2B,) its answer's tokens
    half = len(starts) // 2
    prompt_lengths, width, answer_width = starts[:half], int(starts.max()), int(lengths.max())
    prompt_ids = torch.zeros(half, width, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    completion_ids = torch.zeros(2 * half, answer_width, dtype=torch.long)
    completion_mask = torch.zeros_like(completion_ids)
    for b, n in enumerate(prompt_lengths.tolist()):  # the prompt is the chosen row's start, left-padded
        assert torch.equal(batch["input_ids"][b, :n], batch["input_ids"][half + b, :starts[half + b]])
        prompt_ids[b, width - n:], prompt_mask[b, width - n:] = batch["input_ids"][b, :n], 1
    for r, (s, n) in enumerate(zip(starts.tolist(), lengths.tolist())):
        completion_ids[r, :n], completion_mask[r, :n] = batch["input_ids"][r, s:s + n], 1
    shared = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
              "completion_mask": completion_mask}
    on = {"unpadded": torch.tensor(True)}
    return {"padded": full, "unpadded": {**full, **on}, "unpadded, share_prompt": {**shared, **on}}


def loss_check(path: str, pairs: list[dict]) -> tuple[float, str]:
    """|TRL's loss − ours| on one batch, the policy one SGD step away from the reference, the largest
    over our layouts of it."""
    tok, policy = load_causal_lm(path)
    reference = copy.deepcopy(policy).eval()
    with tempfile.TemporaryDirectory() as out:
        trainer = trl_trainer(policy, reference, tok, pairs[:8], 1, False, out)
        loader = trainer.get_train_dataloader()
        batches = [trainer._prepare_inputs(b) for b in loader]
        policy.train()
        step = torch.optim.SGD(policy.parameters(), lr=1e-3)
        trainer.compute_loss(policy, batches[1]).backward()  # move the policy off the reference
        step.step()
        policy.eval()
        batch = batches[0]
        with torch.no_grad():
            theirs = trainer.compute_loss(policy, batch).item()
            diffs = {}
            for name, layout in our_layouts(batch).items():
                chosen, rejected = pair_logprobs(policy, layout)
                ref_chosen, ref_rejected = pair_logprobs(reference, layout)
                ours = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)[0].item()
                diffs[name] = abs(theirs - ours)
            delta = (chosen - ref_chosen) - (rejected - ref_rejected)
    gaps = ", ".join(f"{name} {gap:.2e}" for name, gap in diffs.items())
    said = (f"loss on one batch: TRL {theirs:.6f}; |TRL - ours|: {gaps}; "
            f"policy vs reference: mean |Δ| {delta.abs().mean():.4f}")
    return max(diffs.values()), said


def adamw(params):
    # TRL's optimiser (transformers' default adamw_torch_fused) and its weight decay (0)
    return torch.optim.AdamW(params, lr=1e-6, weight_decay=0.0, fused=True)


def time_ours(path: str, pairs: list[dict], steps: int, share_prompt: bool, unpadded: bool) -> float:
    import pytorch_lightning as pl

    from weaks2strong.models.preference import (
        DPOModule,
        PreferenceCollator,
        PreferenceRow,
        with_reference,
    )
    from weaks2strong.student.data.preferences import PreferenceDataModule

    tok, lm = load_causal_lm(path)
    collator = PreferenceCollator(tok, max_prompt_tokens=256, max_answer_tokens=256, share_prompt=share_prompt,
                                  unpadded=unpadded)
    rows = [PreferenceRow(p["prompt"], p["chosen"], p["rejected"]) for p in pairs[: 4 * (steps + 1)]]
    started = time.perf_counter()
    rows = with_reference(lm, collator, rows, batch_size=4)
    module = DPOModule(lm, optimizer=adamw, beta=0.1)
    data = PreferenceDataModule(collator, rows, rows[:4], batch_size=4)
    trainer = pl.Trainer(max_steps=steps + 1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", gradient_clip_val=1.0)
    trainer.fit(module, datamodule=data)
    return (steps + 1) / (time.perf_counter() - started)  # the reference pass included, as TRL's precomputation


def time_trl(path: str, pairs: list[dict], steps: int, precompute: bool) -> float:
    tok, model = load_causal_lm(path)
    ref = None if precompute else copy.deepcopy(model).eval()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()  # TRL tokenises and precomputes while the trainer is built
        trainer = trl_trainer(model, ref, tok, pairs[: 4 * (steps + 1)], steps + 1, precompute, out)
        trainer.train()
        total = time.perf_counter() - started
    return (steps + 1) / total  # steps/s over the run, tokenising and precomputation included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2,
                        help="times each run is timed; the best counts (the one other jobs disturbed least)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "hh_harmless" / "test.jsonl.gz"))
    parser.add_argument("--out", type=Path, default=None,
                        help="the markdown it writes (default: docs/results/dpo_vs_trl.md)")
    args = parser.parse_args()
    torch.manual_seed(0)
    path = resolve_model("smollm2-135m-instruct", str(REPO / "data" / "models"))
    pairs = hh_pairs(Path(args.data), 4 * (args.steps + 1) + 8)
    load = os.getloadavg()[0]
    diff, said = loss_check(path, pairs)
    steps = args.steps
    runs = {  # ours and TRL's in turn, so that a change in the machine's load falls on both
        "ours, unpadded, each prompt run once for both answers (share_prompt)":
            lambda: time_ours(path, pairs, steps, share_prompt=True, unpadded=True),
        "TRL, precompute_ref_log_probs=True": lambda: time_trl(path, pairs, steps, precompute=True),
        "ours, padded batch, share_prompt (the layout before unpadding)":
            lambda: time_ours(path, pairs, steps, share_prompt=True, unpadded=False),
        "TRL, precompute_ref_log_probs=False": lambda: time_trl(path, pairs, steps, precompute=False)}
    rates = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name in list(runs)[::-1 if repeat % 2 else 1]:  # every other repeat in reverse
            rates[name].append(runs[name]())
            print(f"{name}: {rates[name][-1]:.4f} steps/s, load {os.getloadavg()[0]:.1f}", flush=True)
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    print(said)
    print(f"\n{args.steps + 1} steps of batch 4 each, each run timed {args.repeats} times (in turn, every other "
          f"round in reverse); 1-minute load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    print(f"\n| run | steps/s, the best of {args.repeats} | s/step | each repeat's steps/s |\n|---|---|---|---|")
    for name, each in rates.items():
        print(f"| {name} | {max(each):.4f} | {1 / max(each):.2f} | {', '.join(f'{r:.4f}' for r in each)} |")
    trl_best = max(max(v) for k, v in rates.items() if k.startswith("TRL"))
    ours = max(max(v) for k, v in rates.items() if k.startswith("ours"))
    print(f"speedup_vs_trl={ours / trl_best:.2f} max_loss_diff={diff:.2e} ours_steps_per_s={ours:.4f} "
          f"trl_steps_per_s={trl_best:.4f}")
    record.write("dpo_vs_trl", "Our DPO step against TRL's DPOTrainer", args.out)


if __name__ == "__main__":
    main()
