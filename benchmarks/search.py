"""Weak-to-strong search (Zhou et al. 2024) at equal strong-model compute: plain sampling, best-of-N
and chunk-level beam search, each steered by the same guide pair (SmolLM2-135M tuned vs untuned)
over a frozen Gemma-3-270M, on several seeds (splits vary). Two tasks: sciq_search (exact match of
SciQ answers) and sentiment_search (the positive-sentiment reward of IMDB review continuations).

    .venv/bin/python benchmarks/search.py [experiment=sciq_search|sentiment_search] [seeds=0,1,2] [overrides]

Per seed: each method's test score and its paired difference to the others (the same questions);
the mean over seeds with the standard error of that mean. Methods and their (W, K, L) are
``search.methods`` in the experiment's YAML. Ends with one key=value line; what it prints is written to
docs/results/search_<experiment>.md.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from weaks2strong.cli import CONFIG_DIR
from weaks2strong.pipeline.common.config import build
from weaks2strong.pipeline.search.run import run as run_search
from weaks2strong.runtime.artifacts import Store
from weaks2strong.runtime.resolvers import register_resolvers


def main(argv: list[str]) -> None:
    seeds, experiment, overrides = [0, 1, 2], "sciq_search", []
    for arg in argv:
        if arg.startswith("seeds="):
            seeds = [int(s) for s in arg.split("=", 1)[1].split(",")]
        elif arg.startswith("experiment="):
            experiment = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
    register_resolvers()
    runs = {}
    for seed in seeds:
        with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}", f"seed={seed}", *overrides])
        task = build(cfg.task, "task", _convert_="all")
        run_dir = Path(cfg.paths.runs_dir) / "bench_search" / experiment / f"s{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        runs[seed] = run_search(cfg, task, Store(cfg.paths.cache_dir), run_dir)
        runs[seed]["wall_s"] = time.perf_counter() - started
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written

    record = Recording()
    methods, metric = list(runs[seeds[0]]["settings"]), runs[seeds[0]]["metric"]
    settings = runs[seeds[0]]["settings"]
    print(f"{'method (W, K, L)':26s} " + " ".join(f"{'seed ' + str(s):>14s}" for s in seeds)
          + f" {'mean ± SE':>14s} {'tokens/q':>9s}")
    means = {}
    for name in methods:
        em = [runs[s]["search"]["test"][name][metric] for s in seeds]
        se = [runs[s]["search"]["test"][name][f"{metric}_se"] for s in seeds]
        tokens = np.mean([runs[s]["search"]["test"][name]["strong_tokens_per_question"] for s in seeds])
        w = settings[name]
        means[name] = float(np.mean(em))
        spread = float(np.std(em, ddof=1) / np.sqrt(len(em))) if len(em) > 1 else float(se[0])
        label = f"{name} ({w['width']}, {w['samples']}, {w['chunk'] or '∞'})"
        print(f"{label:26s} " + " ".join(f"{e:8.3f}±{s:.3f}" for e, s in zip(em, se))
              + f" {means[name]:7.3f}±{spread:.3f} {tokens:9.1f}")
    print(f"\npaired test {metric} differences (same questions), per seed:")
    pairs = list(runs[seeds[0]]["paired"]["test"])
    heads = {}
    for pair in pairs:
        d = [runs[s]["paired"]["test"][pair]["diff"] for s in seeds]
        se = [runs[s]["paired"]["test"][pair]["se"] for s in seeds]
        heads[pair] = float(np.mean(d))
        print(f"  {pair:28s} " + " ".join(f"{x:+.3f}±{e:.3f}" for x, e in zip(d, se)) + f"   mean {np.mean(d):+.3f}")
    print("\nwall time per seed (2 CPU cores, cache cold or warm as found): "
          + ", ".join(f"seed {s} {runs[s]['wall_s']:.0f} s" for s in seeds))
    print(" ".join([f"{n}_{metric}={means[n]:.3f}" for n in methods]
                   + [f"{p}={v:+.3f}" for p, v in heads.items()]))
    record.write(f"search_{experiment}", f"Weak-to-strong search at equal strong-model compute ({experiment})",
                 argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
