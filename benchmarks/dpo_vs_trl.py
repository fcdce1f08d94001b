"""Our DPO step against TRL's DPOTrainer: the same model (SmolLM2-135M-Instruct), the same real
HH-RLHF harmless pairs (../shared/datasets/hh_harmless), batch 4, at most 256 tokens.

1. Loss: one TRL-collated batch, the policy moved off the reference (one SGD step on another batch),
   TRL's ``_compute_loss`` against ``preference_loss`` on ``target_logprobs`` of the same tensors.
2. Speed: ``--steps`` + 1 optimiser steps, full fine-tuning, AdamW, fp32 on CPU, steps per second of
   wall time for the whole fit: ours (the reference log-probs computed once, that pass counted), with
   each prompt run once for its two answers (``share_prompt``) and without, against TRL with
   ``precompute_ref_log_probs`` off and on (its precomputation counted too).

TRL is needed here only: ``pip install --no-deps --target data/bench_pkgs trl==1.16.0 datasets dill
multiprocess xxhash``. Prints a table, then one line:
``speedup_vs_trl=… max_loss_diff=… ours_steps_per_s=… trl_steps_per_s=…``
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data" / "bench_pkgs")]

import torch  # noqa: E402

from weaks2strong.models.causal_lm import load_causal_lm  # noqa: E402
from weaks2strong.models.lm_logprobs import target_logprobs  # noqa: E402
from weaks2strong.models.losses import preference_loss  # noqa: E402
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


def loss_check(path: str, pairs: list[dict]) -> float:
    """|TRL's loss − ours| on one batch, the policy one SGD step away from the reference."""
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
            mask = batch["completion_mask"].bool()
            logps = target_logprobs(policy, batch["input_ids"], batch["attention_mask"], mask).sum(-1)
            ref_logps = target_logprobs(reference, batch["input_ids"], batch["attention_mask"], mask).sum(-1)
            chosen, rejected = logps.chunk(2)
            ref_chosen, ref_rejected = ref_logps.chunk(2)
            ours = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)[0].item()
            delta = (chosen - ref_chosen) - (rejected - ref_rejected)
    print(f"loss on one batch: TRL {theirs:.6f}, ours {ours:.6f}; "
          f"policy vs reference: mean |Δ| {delta.abs().mean():.4f}")
    return abs(theirs - ours)


def time_ours(path: str, pairs: list[dict], steps: int, share_prompt: bool) -> float:
    import pytorch_lightning as pl

    from weaks2strong.models.preference import (
        DPOModule,
        PreferenceCollator,
        PreferenceRow,
        with_reference,
    )
    from weaks2strong.student.data.preferences import PreferenceDataModule

    tok, lm = load_causal_lm(path)
    collator = PreferenceCollator(tok, max_prompt_tokens=192, max_answer_tokens=64, share_prompt=share_prompt)
    rows = [PreferenceRow(p["prompt"], p["chosen"], p["rejected"]) for p in pairs[: 4 * (steps + 1)]]
    started = time.perf_counter()
    rows = with_reference(lm, collator, rows, batch_size=4)
    module = DPOModule(lm, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-6), beta=0.1)
    data = PreferenceDataModule(collator, rows, rows[:4], batch_size=4)
    trainer = pl.Trainer(max_steps=steps + 1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, datamodule=data)
    return (steps + 1) / (time.perf_counter() - started)  # the reference pass included, as TRL's precomputation


def time_trl(path: str, pairs: list[dict], steps: int, precompute: bool) -> float:
    tok, model = load_causal_lm(path)
    ref = None if precompute else copy.deepcopy(model).eval()
    with tempfile.TemporaryDirectory() as out:
        trainer = trl_trainer(model, ref, tok, pairs[: 4 * (steps + 1)], steps + 1, precompute, out)
        started = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - started
    return (steps + 1) / total  # TRL's own steps/s over the run, precomputation included


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "hh_harmless" / "test.jsonl.gz"))
    parser.add_argument("--out", type=Path, default=None,
                        help="the markdown it writes (default: docs/results/dpo_vs_trl.md)")
    args = parser.parse_args()
    torch.manual_seed(0)
    path = resolve_model("smollm2-135m-instruct", str(REPO / "data" / "models"))
    pairs = hh_pairs(Path(args.data), 4 * (args.steps + 1) + 8)
    diff = loss_check(path, pairs)
    rates = {"ours, each prompt run once for both answers (share_prompt)": time_ours(path, pairs, args.steps, True),
             "ours, 2B full sequences": time_ours(path, pairs, args.steps, False),
             "TRL, precompute_ref_log_probs=False": time_trl(path, pairs, args.steps, False),
             "TRL, precompute_ref_log_probs=True": time_trl(path, pairs, args.steps, True)}
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    print("\n| run | steps/s | s/step |\n|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.4f} | {1 / rate:.2f} |")
    trl_best = max(v for k, v in rates.items() if k.startswith("TRL"))
    ours = max(v for k, v in rates.items() if k.startswith("ours"))
    print(f"speedup_vs_trl={ours / trl_best:.2f} max_loss_diff={diff:.2e} ours_steps_per_s={ours:.4f} "
          f"trl_steps_per_s={trl_best:.4f}")
    record.write("dpo_vs_trl", "Our DPO step against TRL's DPOTrainer", args.out)


if __name__ == "__main__":
    main()
