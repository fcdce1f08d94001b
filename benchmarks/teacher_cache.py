"""What a new split seed costs in teacher time once split-independent teachers cache per example.

    python benchmarks/teacher_cache.py                  # sst2 at the ledger's sizes, seeds 0 1 2
    python benchmarks/teacher_cache.py --teachers vader tfidf_lr --seeds 0 1 2 3

Runs the teach stage of SST-2 (task.pool_size and sizes as in benchmarks/w2s_table.py, the sentiment
teachers including SmolLM2 unless --teachers says otherwise) for each split seed in turn, in a fresh
store, and prints per seed and teacher the seconds and how many examples were labelled (the rest came
from the per-example cache). Headline: each later seed's teacher seconds as a share of the first's.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--teachers", nargs="+", default=None, help="default: every teacher of teachers=sentiment")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch
    from omegaconf import OmegaConf

    from weaks2strong.pipeline.classification.teach import teach
    from weaks2strong.pipeline.common.config import build
    from weaks2strong.runtime.artifacts import Store

    torch.set_num_threads(2)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import w2s_table

    spec = w2s_table.TASKS["sst2"]
    rows, totals = [], {}
    with tempfile.TemporaryDirectory(prefix="teacher-cache-") as store_dir:
        store = Store(store_dir)
        for seed in args.seeds:
            cfg = w2s_table.compose("sst2", seed, [f"paths.cache_dir={store_dir}"])
            teachers = OmegaConf.to_container(cfg.teachers, resolve=True)
            chosen = {k: v for k, v in teachers.items() if args.teachers is None or k in args.teachers}
            dev = build(cfg.task, "task", _convert_="all").without_test()
            started = time.perf_counter()
            out = teach(dev, OmegaConf.create(chosen), store)
            totals[seed] = time.perf_counter() - started
            for name, artifact in out.items():
                timing = json.loads((artifact.path / "timing.json").read_text())
                rows.append((seed, name, timing["seconds"], timing.get("labelled"),
                             timing.get("from_example_cache", 0)))
            print(f"seed {seed}: {totals[seed]:.1f} s", flush=True)
    first = totals[args.seeds[0]]
    shares = " ".join(f"seed{s}_share={totals[s] / first:.3f}" for s in args.seeds[1:])
    lines = ["# Teacher time per split seed with the per-example cache", "",
             f"Written by `python benchmarks/teacher_cache.py` on {time.strftime('%Y-%m-%d')} (2 CPU cores, shared "
             "with other jobs); do not edit by hand. SST-2 at the ledger's sizes: "
             f"pool_size {spec['pool_size']}, sizes {spec['sizes']}; each seed's teach stage labels w2s_train + val "
             "in a fresh store shared by the seeds. vader and smollm2 are split-independent (cached per example); "
             "tfidf_lr is trained on each seed's weak_train and labels everything again.", "",
             "| seed | teacher | seconds | labelled | from the per-example cache |", "|---|---|---|---|---|"]
    lines += [f"| {seed} | {name} | {sec:.1f} | {labelled} | {cached} |" for seed, name, sec, labelled, cached in rows]
    lines += ["", f"`first_seed_s={first:.1f} {shares}`", ""]
    if args.teachers is None and args.seeds == [0, 1, 2]:  # the default run is the one on record
        from weaks2strong.runtime.artifacts import write_text

        write_text(ROOT / "docs" / "results" / "teacher_cache.md", "\n".join(lines))
    print("\n".join(lines[4:]))
    print(f"first_seed_s={first:.1f} {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
