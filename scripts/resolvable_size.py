"""The smallest gold size at which a task's weak-to-strong measurement resolves: the ceiling (the
student trained on w2s_train's gold) beats the best weak source on val by two paired standard errors.
Below that size PGR's denominator is noise and the run says nothing.

    python scripts/resolvable_size.py experiment=sciq_gen --sizes 400 800 1600 3200
    python scripts/resolvable_size.py experiment=hh_harmless --sizes 120 240 480 960 trainer.accelerator=gpu

A rung sets ``task.sizes.w2s_train`` and runs the pipeline's own cached stages, for val only:
- generation (``sciq_gen``): each teacher's greedy answer (``gen_propose`` on val) and the ceiling
  (``gen_ceiling``); a row is right on exact match;
- preference (``hh_harmless``): each judge (``teach``) and the gold-DPO'd student (``pref_align``
  gold, the ceiling of ``experiment=hh_harmless``); a pair is right on the judge's vote or the
  student's implicit reward, a tie counting half.
The best weak source is the teacher best on val, scored on the same val (a max over teachers: it
favours the weak side, so the rule is conservative). d_i = ceiling_i − best_i over val's rows;
the rung resolves when mean(d) > 2·sd(d)/√n. The ladder stops at the first rung that resolves.
val is drawn after w2s_train from the same pool (``tasks/base.py: DRAW_ORDER``), so each rung has its
own val and its own paired comparison; weak_train, and so every trained teacher, is the same.

Writes ``docs/results/resolvable_size_<task>.md`` (``--out``) and ends with one line of key=value
figures. The size it finds is the one to write into the experiment's GPU notes. A second table gives
every weak source's d ± SE per rung: where only trained sources stay ahead of the ceiling, the same
ladder without them (``~teachers.smollm2_ft_a ~teachers.smollm2_ft_b``) reads its rungs back from the
stage cache and says the size for the weaker ensemble.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaks2strong.pipeline.common.config import build  # noqa: E402
from weaks2strong.pipeline.common.stage import forget_fitted  # noqa: E402
from weaks2strong.runtime.artifacts import Store, write_text  # noqa: E402
from weaks2strong.runtime.errors import UserInputError  # noqa: E402
from weaks2strong.runtime.resolvers import register_resolvers  # noqa: E402


def resolves(ceiling: np.ndarray, weak: np.ndarray, n_se: float = 2.0) -> tuple[float, float, bool]:
    """(mean difference, its standard error, whether the mean exceeds ``n_se`` SEs) of the paired
    per-row scores ceiling − weak (each (N,), in [0, 1])."""
    d = np.asarray(ceiling, dtype=float) - np.asarray(weak, dtype=float)  # (N,)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
    return float(d.mean()), se, bool(d.mean() > n_se * se)


def generation_rung(cfg, dev, store: Store, run_dir: Path) -> dict[str, np.ndarray]:
    """Per val row, 1/0 exact match: each teacher's greedy answer and the ceiling's."""
    from weaks2strong.pipeline.generation.aggregate import teacher_answers
    from weaks2strong.pipeline.generation.distill import distill_lm
    from weaks2strong.pipeline.generation.teach import propose
    from weaks2strong.tasks.generation import exact_match

    gold = dev.answers("val")

    def right(answers):
        return np.array([exact_match(a, g) for a, g in zip(answers, gold)], dtype=float)

    scores = {f"teacher {n}": right(teacher_answers(dev, a, "val"))
              for n, a in propose(dev, cfg.teachers, store, splits=("val",)).items()}
    ceiling = distill_lm(dev, None, cfg, store, run_dir, stage="gen_ceiling")
    scores["ceiling"] = right(ceiling.table("answers")["answer"].tolist())
    return scores


def preference_rung(cfg, dev, store: Store, run_dir: Path) -> dict[str, np.ndarray]:
    """Per val pair, 1 / ½ / 0: each judge's vote and the gold-DPO'd student's implicit reward."""
    from weaks2strong.pipeline.classification.teach import teach
    from weaks2strong.pipeline.common.tables import split_rows
    from weaks2strong.pipeline.preference.align import align_student, gold_pairs, reference_logprobs

    y = dev.labels("val")

    def right(first_better: np.ndarray) -> np.ndarray:  # (N,) P(first better) or a margin centred at 0.5
        return np.where(~np.isfinite(first_better) | (first_better == 0.5), 0.5, (first_better > 0.5) == (y == 0))

    scores = {f"judge {n}": right(split_rows(a, "labels", dev, "val")["p_0"].to_numpy())
              for n, a in teach(dev, cfg.teachers, store).items()}
    reference = reference_logprobs(dev, ("w2s_train", "val"), cfg, store)
    student = align_student(dev, "gold", gold_pairs(dev, reference), "gold", reference, cfg, store, run_dir)
    scores["ceiling"] = right(0.5 + student.table("margins")["margin"].to_numpy())
    return scores


def sources_table(sources: list[tuple[int, dict[str, tuple]]]) -> list[str]:  # one rung at least
    """Every weak source against the ceiling, a row per rung: its val score and the paired d ± SE, ✓
    where the ceiling clears it by two SEs. The rule needs only the best source; this shows which of
    the others a weaker ensemble (``~teachers.<name>`` drops one) would leave the ceiling clear of."""
    names = list(sources[0][1])
    return ["## Every weak source", "",
            "val score (d ± SE against the ceiling); ✓: the ceiling clears it by two paired SEs.", "",
            "| w2s_train | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
            *(f"| {size} | " + " | ".join(f"{v:.3f} ({d:+.3f} ± {se:.3f}){' ✓' if ok else ''}"
                                          for v, d, se, ok in (scored[n] for n in names)) + " |"
              for size, scored in sources), ""]


def ladder_table(name: str, argv: list[str], rows: list[tuple], finished: bool,
                 sources: list[tuple[int, dict[str, tuple]]] = ()) -> str:
    """The ladder's markdown: a row per rung tried so far, whether the ladder ran to its end, and
    (``sources``: per rung, each weak source's (val, d, SE, clears)) every weak source's row."""
    return "\n".join([
        f"# The size at which `{name}` resolves", "",
        f"Written by `python scripts/resolvable_size.py {' '.join(argv)}`; do not edit by hand. A rung resolves "
        "when the ceiling beats the best weak source on val by more than two paired standard errors. `seconds` is "
        "this run's: a rung whose stages were already in the stage cache shows only the time to read them back."
        + ("" if finished else " The ladder had not reached its remaining sizes when this was written (it was "
                               "stopped, or is still running): the rows below are the rungs it finished."), "",
        "| w2s_train | val rows | ceiling val | best weak source | its val | d | SE | resolves | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
        *(f"| {s} | {n} | {c:.3f} | {w} | {wv:.3f} | {d:+.3f} | {se:.3f} | {'yes' if ok else 'no'} | {t:.0f} |"
          for s, n, c, w, wv, d, se, ok, t in rows), "", *(sources_table(sources) if sources else [])])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", required=True, metavar="SIZE",
                        help="w2s_train sizes, tried in increasing order; Hydra overrides may follow them")
    parser.add_argument("--out", type=Path, help="default: docs/results/resolvable_size_<task>.md")
    args, overrides = parser.parse_known_args(argv)
    sizes = [int(a) for a in args.sizes if a.isdigit()]
    overrides += [a for a in args.sizes if not a.isdigit()]  # `--sizes 400 800 task.sizes.val=400` reads as meant
    for bad in (a for a in overrides if "=" not in a and not a.startswith("~")):  # ~key deletes a key
        parser.error(f"{bad!r} is neither a size nor a Hydra override (key=value, ~key)")
    if not sizes:
        parser.error("--sizes: give at least one w2s_train size")
    register_resolvers()
    rows: list[tuple] = []
    sources: list[tuple[int, dict[str, tuple]]] = []
    for size in sorted(sizes):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["logger=none", "paths.output_dir=runs/resolvable_size", *overrides,
                                               f"task.sizes.w2s_train={size}"])
        run_dir = Path(cfg.paths.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            task = build(cfg.task, "task", _convert_="all")
        except UserInputError as err:  # e.g. a size the pool cannot hold: one line, before any stage runs
            parser.error(f"--sizes {size}: {err}")
        kind = type(task).__name__
        if kind not in ("GenerationTask", "PreferenceTask"):
            parser.error(f"task {task.name} is a {kind}: this ladder is for the generation and preference paths "
                         f"(a classification task's ceiling is measured by its own run's metrics.json)")
        started = time.perf_counter()
        rung = generation_rung if kind == "GenerationTask" else preference_rung
        scores = rung(cfg, task.without_test(), Store(cfg.paths.cache_dir), run_dir)
        forget_fitted()  # a rung's teachers and ceiling are not used again: held, the SciQ ladder grew 7.7 → 12.5 GB
        scored = {n: (s.mean(), *resolves(scores["ceiling"], s)) for n, s in scores.items() if n != "ceiling"}
        sources.append((size, scored))
        weak = max(scored, key=lambda n: scored[n][0])
        _, diff, se, ok = scored[weak]
        rows.append((size, len(scores["ceiling"]), scores["ceiling"].mean(), weak, scores[weak].mean(), diff, se, ok,
                     time.perf_counter() - started))
        print(f"w2s_train={size}: ceiling {scores['ceiling'].mean():.3f}, "
              f"best weak ({weak}) {scores[weak].mean():.3f}, d {diff:+.3f} ± {se:.3f}: "
              f"{'resolves' if ok else 'does not resolve'}", flush=True)
        found = size if ok else None
        # after every rung, so a ladder stopped in a later (longer) rung keeps what it measured
        write_text(args.out or REPO / "docs" / "results" / f"resolvable_size_{task.name}.md",
                   ladder_table(task.name, argv, rows, finished=ok or size == max(sizes),
                                sources=sources))
        if ok:
            break
    name = task.name
    last = rows[-1]
    print(f"task={name} resolvable_size={found if found is not None else 'none'} largest_tried={last[0]} "
          f"ceiling_val={last[2]:.4f} best_weak_val={last[4]:.4f} d={last[5]:+.4f} se={last[6]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
