"""The generation ceiling alone: the causal-LM student trained on gold w2s_train answers and scored on
val, through the pipeline's own stage (its artifact is reused by a later full run with the same
config). Use it to choose the recipe and the data size on val before paying for teachers.

    python scripts/gen_ceiling.py experiment=sciq_gen task.sizes.w2s_train=1600 [more overrides]

The ceiling trains with its own optimizer: tune it with student.ceiling.model.optimizer.lr=...

Prints ONE final line of key=value figures: the ceiling's val EM and F1, with the size it took, and
the untrained student's k-shot val EM on the same rows (the bar the ceiling must clear).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaks2strong.pipeline.common.config import build, settings_for  # noqa: E402
from weaks2strong.pipeline.generation.aggregate import em_of  # noqa: E402
from weaks2strong.pipeline.generation.distill import distill_lm  # noqa: E402
from weaks2strong.pipeline.generation.evaluate import kshot_answers  # noqa: E402
from weaks2strong.runtime.artifacts import Store  # noqa: E402
from weaks2strong.runtime.resolvers import register_resolvers  # noqa: E402


def main(overrides: list[str]) -> int:
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=sciq_gen", "logger=csv", "paths.output_dir=runs/gen_ceiling",
                                           *overrides])
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = build(cfg.task, "task", _convert_="all").without_test()
    started = time.perf_counter()
    ceiling = distill_lm(dev, None, cfg, Store(cfg.paths.cache_dir), run_dir, stage="gen_ceiling")
    score = em_of(ceiling.table("answers")["answer"].tolist(), dev.answers("val"))
    kshot = em_of(kshot_answers(dev, cfg, Store(cfg.paths.cache_dir), "val"), dev.answers("val"))
    lr = settings_for(cfg, "student", ceiling=True).student.model.optimizer.lr  # student.ceiling's
    print(f"w2s_train={len(dev.split('w2s_train'))} epochs={cfg.trainer.max_epochs} "
          f"lr={lr} ceiling_val_em={score['em']:.4f} ceiling_val_f1={score['f1']:.4f} "
          f"kshot_val_em={kshot['em']:.4f} clears_kshot={int(score['em'] > kshot['em'])} "
          f"seconds={time.perf_counter() - started:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
