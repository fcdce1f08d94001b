"""The causal-LM student (``student=gemma3``) before and after issue 26: seconds per training example
and val accuracy of the old recipe (full fine-tuning, K full sequences per row, shuffled batches) and
the new default (LoRA, each prompt read once for its K verbalizers, length-bucketed batches).

Both students are built from the config as ``distill`` builds them (``student=gemma3`` plus each arm's
overrides), trained on SST-2's gold w2s_train rows (the ceiling's targets) for ``trainer.max_epochs``
epochs with the recipe's optimizer and schedule, in one process and in lockstep: a step of one arm,
then a step of the other, so a busy machine slows both alike. Each step is timed from fetching the
batch to the scheduler's step; then val is predicted in order (as ``distill`` predicts), batch by
batch in turn, timed per example. Val accuracy comes with its binomial standard error.

The default size (128 rows) keeps the run at about 5 minutes on two cores at load 4, 15 at load 10;
the minutes per model at w2s_train 400 are extrapolated from the measured seconds per example: 2
epochs of 400 rows, val (200) read after each epoch, then w2s_train, val and test (400) predicted once.
The old recipe's numbers include one change that reaches it too: the LM head's lone chunk is no longer
recomputed in backward (``_head_logprobs``), a few percent of its step.

    python benchmarks/verbalizer_student.py [--rows 128] [--val 200] [--arm NAME=OVERRIDE,OVERRIDE ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

# spinning OpenMP waits make a busy shared machine's cores a bottleneck; the same for every arm
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the old recipe, as student=gemma3 was before issue 26 (its learning rate was chosen for full fine-tuning)
BEFORE = ["student.model.lora=null", "student.model.optimizer.lr=2e-5", "student.data.share_prompt=false",
          "student.data.bucket_by_length=false", "student.data.eval_batch_size=null"]
ARMS = {"before": BEFORE, "after": []}
SIZE_400 = {"w2s_train": 400, "val": 200, "test": 400, "epochs": 2}  # the model the goal is stated for


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from weaks2strong.cli import CONFIG_DIR

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def build_student(cfg, task):
    """The student ``distill`` builds for the ceiling (gold targets), seeded the same way."""
    import pytorch_lightning as pl

    from weaks2strong.pipeline.common.config import build
    from weaks2strong.zoo import resolve_model

    pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
    k = task.num_classes
    recipe = build(cfg.student.recipe, "student.recipe")
    return recipe(task=task, soft=np.eye(k)[task.labels("w2s_train")], weights=np.ones(len(task.split("w2s_train"))),
                  encoder_path=resolve_model(cfg.student.encoder, cfg.paths.models_dir),
                  model=build(cfg.student.model, "student.model"), data=build(cfg.student.data, "student.data"),
                  net=dict(cfg.student.net), seed=cfg.seeds.student)


class Arm:
    """One student with its optimizer and schedule, stepped by hand as Lightning would step it."""

    def __init__(self, name: str, overrides: list[str], task, base: list[str]):
        self.name, self.overrides = name, overrides
        self.cfg = compose(base + overrides)
        self.parts = build_student(self.cfg, task)
        self.module, self.data = self.parts.module, self.parts.data
        self.epochs = int(self.cfg.trainer.max_epochs)
        self.loader = self.data.train_dataloader()  # built once, as Lightning builds it: its shuffling goes on
        steps = self.epochs * len(self.loader)
        # configure_optimizers reads the step count from the trainer; no trainer runs here
        self.module._trainer = SimpleNamespace(estimated_stepping_batches=steps, world_size=1)
        configured = self.module.configure_optimizers()
        self.module._trainer = None
        self.optimizer, self.scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        self.trained = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        self.train_seconds, self.train_rows, self.val_seconds = 0.0, 0, 0.0

    def epoch(self, epoch: int):
        """A generator of timed training steps over one epoch."""
        self.module.train()
        if hasattr(self.loader.batch_sampler, "set_epoch"):  # as Lightning does for a length-bucket sampler
            self.loader.batch_sampler.set_epoch(epoch)
        batches = iter(self.loader)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return
            loss = self.module._loss(batch)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.train_seconds += time.perf_counter() - start
            self.train_rows += len(batch["weights"])
            yield loss.item()


@torch.no_grad()
def shared_prompt_gap(arm: Arm) -> float:
    """The largest difference between the (B, K) verbalizer log-probs of a batch read with its prompts
    shared and the same batch as K whole sequences a row, under this arm's model as built."""
    from weaks2strong.models.causal_lm import CandidateCollator

    collate, rows = arm.data.collate, arm.data.train_rows[:8]
    scores = [arm.module.batch_logits(CandidateCollator(collate.tok, collate.max_prompt_tokens,
                                                        collate.max_answer_tokens, True, share)(rows))
              for share in (False, True)]
    return (scores[0] - scores[1]).abs().max().item()


def lockstep(generators: list) -> None:
    """One step of each in turn until all are done."""
    live = list(generators)
    while live:
        live = [g for g in live if next(g, StopIteration) is not StopIteration]


@torch.no_grad()
def predict_val(arms: list[Arm], task) -> dict[str, np.ndarray]:
    """(N, K) val probabilities per arm, predicted in order, a batch of each arm in turn."""
    from weaks2strong.models.soft_target import logits

    loaders = {arm.name: iter(arm.parts.predict_loader(task, "val")) for arm in arms}
    out = {arm.name: [] for arm in arms}
    for arm in arms:
        arm.module.eval()
    while loaders:
        for arm in arms:
            if arm.name not in loaders:
                continue
            start = time.perf_counter()
            batch = next(loaders[arm.name], None)
            if batch is None:
                del loaders[arm.name]
                continue
            probs = logits(arm.module, batch, torch.device("cpu")).softmax(-1)  # (B, K)
            arm.val_seconds += time.perf_counter() - start
            # a length-bucketed loader batches rows out of order and says where each goes (as predict_proba reads it)
            out[arm.name] += zip(batch.get("row_index", range(len(out[arm.name]), len(out[arm.name]) + len(probs))),
                                 probs)
    return {name: torch.stack([p for _, p in sorted(rows, key=lambda r: int(r[0]))]).numpy()
            for name, rows in out.items()}


def minutes_per_model(train_s: float, eval_s: float) -> float:
    """A student at w2s_train 400: 2 epochs of 400 rows, val after each epoch, then w2s_train, val and
    test predicted once."""
    s = SIZE_400
    evaluated = s["epochs"] * s["val"] + s["w2s_train"] + s["val"] + s["test"]
    return (s["epochs"] * s["w2s_train"] * train_s + evaluated * eval_s) / 60


def main() -> None:
    from weaks2strong.runtime.artifacts import write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128, help="w2s_train rows each arm trains on")
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=OVERRIDE,...",
                        help="another arm: student=gemma3 with these overrides (repeatable)")
    parser.add_argument("--only", default=None, help="comma-separated arms to run (default: before, after, --arm's)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "verbalizer_student.md"),
                        help="where the printed text is written ('' for nowhere)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    arms_cfg = dict(ARMS)
    for spec in args.arm:
        name, _, overrides = spec.partition("=")
        arms_cfg[name] = [o for o in overrides.split(",") if o]
    names = args.only.split(",") if args.only else list(arms_cfg)
    base = ["student=gemma3", "logger=none", f"trainer.max_epochs={args.epochs}",
            f"task.sizes.w2s_train={args.rows}", f"task.sizes.val={args.val}", "task.sizes.test=16",
            "task.sizes.weak_train=16"]
    from weaks2strong.pipeline.common.config import build

    task = build(compose(base).task, "task", _convert_="all")
    arms = [Arm(name, arms_cfg[name], task, base) for name in names]
    load = os.getloadavg()[0]
    lines = [f"# student=gemma3 (Gemma-3-270M, fp32) on SST-2: w2s_train {args.rows} gold rows, "
             f"{args.epochs} epochs, val {args.val}; threads={args.threads}, load at start: {load:.1f}"]
    for arm in arms:
        lines.append(f"# {arm.name}: trains {arm.trained / 1e6:.1f}M parameters; overrides: "
                     f"{' '.join(arm.overrides) or '(none: the default)'}")
    print("\n".join(lines), flush=True)

    diff = shared_prompt_gap(arms[-1])
    print(f"# shared prompt vs whole sequences, {arms[-1].name}'s untrained model, 8 w2s_train rows: "
          f"max |Δ log p| = {diff:.1e}", flush=True)
    lines.append(f"# shared prompt vs whole sequences on 8 rows (one forward each): max |Δ log p| = {diff:.1e}")

    started = time.perf_counter()
    for epoch in range(args.epochs):
        lockstep([arm.epoch(epoch) for arm in arms])
        print(f"epoch {epoch} done in {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    probs = predict_val(arms, task)
    gold = np.asarray(task.labels("val"))

    header = f"{'arm':<14}{'s/train ex':>12}{'s/val ex':>10}{'val acc':>9}{'SE':>7}{'min/model@400':>15}"
    table = [header, "-" * len(header)]
    results = {}
    for arm in arms:
        hits = probs[arm.name].argmax(-1) == gold
        acc, se = hits.mean(), hits.std(ddof=1) / np.sqrt(len(hits))
        train_s, val_s = arm.train_seconds / arm.train_rows, arm.val_seconds / len(gold)
        results[arm.name] = (train_s, val_s, acc, se, minutes_per_model(train_s, val_s))
        table.append(f"{arm.name:<14}{train_s:>12.3f}{val_s:>10.3f}{acc:>9.4f}{se:>7.4f}{results[arm.name][4]:>15.1f}")
    text = "\n".join(lines + ["", *table, ""])
    if "before" in results and "after" in results:
        (b_train, _, b_acc, b_se, b_min), (a_train, _, a_acc, a_se, a_min) = results["before"], results["after"]
        text += (f"\nminutes per model at w2s_train 400 are extrapolated ({SIZE_400}); before: {b_min:.1f}\n"
                 f"s_per_example_before={b_train:.3f} s_per_example_after={a_train:.3f} "
                 f"speedup={b_train / a_train:.2f} "
                 f"val_acc_before={b_acc:.4f}±{b_se:.4f} val_acc_after={a_acc:.4f}±{a_se:.4f} "
                 f"minutes_per_model_w2s400={a_min:.1f}\n")
    print("\n" + "\n".join(text.splitlines()[len(lines) + 1:]))
    if args.out:
        command = " ".join(["python", "benchmarks/verbalizer_student.py", *sys.argv[1:]])
        write_text(Path(args.out), f"# The causal-LM student before and after issue 26\n\nWritten by `{command}` on "
                                   f"{time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} CPU cores, shared with other "
                                   f"jobs; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end); "
                                   f"do not edit by hand.\n\n```text\n{text}```\n")


if __name__ == "__main__":
    main()
