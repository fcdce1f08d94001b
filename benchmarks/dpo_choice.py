"""β and the epochs of the verbalizer student's DPO (``align=verbalizer_dpo``), chosen on val (issue 26).

    python benchmarks/dpo_choice.py --tasks sst2 --seeds 2          # its grid on one (task, seed), resumable
    python benchmarks/dpo_choice.py --table-only                    # the table from the choice ledger

Each point of the grid is the align stage of the causal-LM ledger's cell (``benchmarks/w2s_table.py``:
the same task draw, teachers, aggregate and teacher-forced student, all reused from its stage cache)
with ``align.model.beta`` and ``align.epochs`` set, run up to align and no further: the test split stays
sealed (``Task.without_test``), and the only number kept is the aligned student's accuracy on val gold,
beside the teacher-forced student's it started from. One JSON line per point goes to
``docs/results/dpo_choice.jsonl`` (keyed by the point's config and the code of the align stage, the
student and distill), so the grid grows across sessions; ``docs/results/dpo_choice.md`` is written
from it. A task's choice is the point with the highest mean val accuracy over its seeds, if it beats
the default by more than one standard error of their paired difference on val (else the default).
The grid moves one factor at a time around the default (β = 1, one epoch): a full product is 3× the
CPU time for what one factor at a time already shows.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from weaks2strong.evaluate.ledger import Ledger  # noqa: E402

CHOICES = ROOT / "docs" / "results" / "dpo_choice.jsonl"
DEFAULT = (1.0, 1)  # (β, epochs) of conf/align/verbalizer_dpo.yaml, which the causal ledger ran
GRID = (DEFAULT, (0.5, 1), (2.0, 1), (1.0, 2))
RECORD = 2  # the record's fields: 2 added val_correct (each val row right or wrong, for paired counts)


def bits(correct: np.ndarray) -> str:
    """(N,) booleans as a string of 0/1: which val rows a student got right, for paired counts."""
    return "".join("1" if c else "0" for c in correct)


def latest(records: list[dict]) -> list[dict]:
    """One record per (task, seed, aggregator, point): the last written."""
    out = {}
    for r in records:
        out[(r["task"], r["seed"], r["aggregator"], r["beta"], r["epochs"])] = r
    return list(out.values())


def discordant(rows: list[dict], field: str, other: list[dict], other_field: str) -> tuple[int, int] | None:
    """(val rows right only in ``rows``, right only in ``other``), summed over their seeds (paired by seed);
    None where a record holds no per-row correctness (an older record)."""
    mine = {r["seed"]: r.get(field) for r in rows}
    theirs = {r["seed"]: r.get(other_field) for r in other}
    if any(mine.get(s) is None or theirs.get(s) is None for s in mine):
        return None
    won = sum(a == "1" and b == "0" for s in mine for a, b in zip(mine[s], theirs[s]))
    lost = sum(a == "0" and b == "1" for s in mine for a, b in zip(mine[s], theirs[s]))
    return won, lost


def clears_one_se(rows: list[dict], default: list[dict]) -> bool:
    """Whether ``rows`` beat ``default`` on val by more than one standard error of their paired difference
    (the one-SE rule: the default stands unless the evidence against it exceeds the noise; on 99-200 val
    rows one row is 0.5-1 point, and a choice that moved on it would re-key the ledger's cells on noise).
    Without per-row correctness (older records), the larger mean wins."""
    paired = discordant(rows, "val_correct", default, "val_correct")
    if paired is None:
        return True
    won, lost = paired
    n = sum(len(r["val_correct"]) for r in rows)
    diff = (won - lost) / n
    se = np.sqrt(max(won + lost - (won - lost) ** 2 / n, 0.0)) / n  # SE of a mean of per-row differences in {-1, 0, 1}
    return diff > se


def choose(records: list[dict]) -> dict[str, dict]:
    """Per task: {"point": (β, epochs), "mean": its mean val accuracy, "seeds": n, "points": {point: (mean, n)},
    "rows": {point: its records}, "tf_val": the teacher-forced student's mean} over the seeds where every
    point of the task ran (a point missing on a seed would be compared on other rows). The best mean wins
    if it beats the default by more than one SE (``clears_one_se``); ties go to the default, then to fewer
    epochs, then to the larger β (the smaller step)."""
    out = {}
    records = latest(records)
    for task in sorted({r["task"] for r in records}):
        rows = [r for r in records if r["task"] == task]
        points = sorted({(r["beta"], r["epochs"]) for r in rows})
        by_seed: dict[int, dict] = {}
        for r in rows:
            by_seed.setdefault(r["seed"], {})[(r["beta"], r["epochs"])] = r
        seeds = sorted(s for s, got in by_seed.items() if all(p in got for p in points))
        if not seeds:
            continue
        kept = {p: [by_seed[s][p] for s in seeds] for p in points}
        means = {p: (float(np.mean([r["val_accuracy"] for r in kept[p]])), len(seeds)) for p in points}
        best = max(points, key=lambda p: (round(means[p][0], 9), p == DEFAULT, -p[1], p[0]))
        if best != DEFAULT and DEFAULT in kept and not clears_one_se(kept[best], kept[DEFAULT]):
            best = DEFAULT
        tf = float(np.mean([r["tf_val_accuracy"] for r in kept[best]]))
        out[task] = {"point": best, "mean": means[best][0], "seeds": len(seeds), "points": means, "rows": kept,
                     "tf_val": tf}
    return out


def render(records: list[dict]) -> tuple[str, str]:
    """(markdown table, headline) of the choice ledger."""
    chosen = choose(records)
    lines = ["Val accuracy of the aligned student (Bayesian pairs, DPO after teacher forcing), mean over the seeds",
             "where every point ran; tf = the teacher-forced student it starts from; (+a −b): val rows (summed over",
             "seeds) that the point gets right and the default wrong, and the reverse. The chosen point is marked *:",
             "the best mean, where it beats the default by more than one SE of their paired difference (else the",
             "default).",
             "", "| task | seeds | tf | " + " | ".join(f"β={b:g}, {e} ep" for b, e in GRID) + " | chosen vs tf |",
             "|---|---|---|" + "---|" * (len(GRID) + 1)]
    for task, c in chosen.items():
        cells = []
        for p in GRID:
            if p not in c["points"]:
                cells.append("–")
                continue
            cell = f"{c['points'][p][0]:.4f}" + ("*" if p == c["point"] else "")
            paired = discordant(c["rows"][p], "val_correct", c["rows"][DEFAULT], "val_correct") \
                if p != DEFAULT and DEFAULT in c["rows"] else None
            cells.append(cell + (f" (+{paired[0]} −{paired[1]})" if paired else ""))
        vs_tf = discordant(c["rows"][c["point"]], "val_correct", c["rows"][c["point"]], "tf_val_correct")
        lines.append(f"| {task} | {c['seeds']} | {c['tf_val']:.4f} | " + " | ".join(cells) + " | "
                     + (f"+{vs_tf[0]} −{vs_tf[1]}" if vs_tf else "–") + " |")
    moved = sum(c["point"] != DEFAULT for c in chosen.values())
    gain = [c["mean"] - c["points"][DEFAULT][0] for c in chosen.values() if DEFAULT in c["points"]]
    headline = (f"dpo_choice_tasks={len(chosen)} dpo_choice_not_default={moved} "
                f"dpo_choice_val_gain_points_max={100 * max(gain, default=0.0):.1f}")
    return "\n".join(lines), headline


def run_point(task_name: str, seed: int, aggregator: str, beta: float, epochs: int, ledger: Ledger,
              done: set[str]) -> bool:
    """The align stage of the causal ledger's cell at (β, epochs); False when already in the ledger."""
    import w2s_table as table
    from omegaconf import open_dict

    from weaks2strong.pipeline.classification import align as align_module
    from weaks2strong.pipeline.classification.aggregate import aggregate_labels
    from weaks2strong.pipeline.classification.distill import distill_classifier
    from weaks2strong.pipeline.classification.refine import refine
    from weaks2strong.pipeline.classification.teach import teach
    from weaks2strong.pipeline.common.tables import split_probs
    from weaks2strong.runtime.artifacts import Store, stable_hash

    task, _, runs = table.causal_plan(task_name, seed, [aggregator])
    cfg = next(c for agg, c, forms, _ in runs if "tf+dpo" in forms)  # DPO after teacher forcing
    with open_dict(cfg):
        cfg.align.model.beta = float(beta)
        cfg.align.epochs = int(epochs)
        cfg.paths.output_dir = str(ROOT / "data" / "ledger_runs" / f"dpo_choice-{task_name}-{seed}")
    version = table.code_version(table.build_class(cfg.student.model._target_), distill_classifier, align_module)
    key = stable_hash("dpo_choice", RECORD, task_name, seed, aggregator, float(beta), int(epochs), version,
                      table.CAUSAL_SIZES[task_name])
    if key in done:
        return False
    dev = task.without_test()  # nothing here reads test
    store = Store(cfg.paths.cache_dir, run_dir=Path(cfg.paths.output_dir))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = refine(dev, teach(dev, cfg.get("teachers") or {}, store), cfg.get("refine"), store)
        targets = aggregate_labels(dev, labels, cfg.aggregator, store)
        student = distill_classifier(dev, targets, cfg, store, Path(cfg.paths.output_dir), stage="student",
                                     adapters=True)
        aligned = align_module.align_verbalizers(dev, targets, student, cfg, store, Path(cfg.paths.output_dir))
    gold = dev.labels("val")
    correct = split_probs(aligned, "predictions", dev, "val").argmax(1) == gold  # (N_val,)
    tf_correct = split_probs(student, "predictions", dev, "val").argmax(1) == gold  # (N_val,)
    summary = aligned.record("summary")
    record = {"key": key, "task": task_name, "seed": seed, "aggregator": aggregator, "beta": float(beta),
              "epochs": int(epochs), "lr": float(cfg.align.model.optimizer.lr),
              "val_accuracy": float(correct.mean()), "val_correct": bits(correct),
              "tf_val_accuracy": float(tf_correct.mean()), "tf_val_correct": bits(tf_correct),
              "pairs": summary.get("pairs"), "align_key": aligned.key, "code_version": version,
              "seconds": round(time.perf_counter() - t0, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    ledger.append(record)
    done.add(key)
    print(f"  {task_name} seed {seed} {aggregator} β={beta:g} epochs={epochs}: val {record['val_accuracy']:.4f} "
          f"(teacher-forced {record['tf_val_accuracy']:.4f}) in {record['seconds']:.0f} s", flush=True)
    return True


def current_version() -> str:
    """The code version a point run today is keyed by: older points are history, not the table's."""
    import w2s_table as table

    from weaks2strong.pipeline.classification import align as align_module
    from weaks2strong.pipeline.classification.distill import distill_classifier

    target = table.compose_causal(next(iter(table.CAUSAL_TASKS)), 0, []).student.model._target_
    return table.code_version(table.build_class(target), distill_classifier, align_module)


def main(argv=None) -> int:
    import w2s_table as table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(table.CAUSAL_TASKS), choices=list(table.CAUSAL_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[2])
    parser.add_argument("--aggregator", default=table.REFERENCE, choices=list(table.CAUSAL_AGGREGATORS))
    parser.add_argument("--ledger", type=Path, default=CHOICES)
    parser.add_argument("--table-only", action="store_true", help="print and write the table, run nothing")
    args = parser.parse_args(argv)
    ledger = Ledger(args.ledger)
    if not args.table_only:
        done = ledger.keys()
        for task_name in args.tasks:
            for seed in args.seeds:
                for beta, epochs in GRID:
                    run_point(task_name, seed, args.aggregator, beta, epochs, ledger, done)
    from _results import Recording

    record = Recording()
    version = current_version()
    text, headline = render([r for r in ledger.records()
                             if r["aggregator"] == args.aggregator and r["code_version"] == version])
    print(text)
    print()
    print(headline)
    if args.ledger == CHOICES:
        record.write("dpo_choice", "β and epochs of the verbalizer student's DPO, chosen on val", argv=["--table-only"])
    else:
        record.discard("a ledger of your own: docs/results keeps the project's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
