"""The ceiling alone: the strong student trained on gold w2s_train, scored on val and (once) on
test, through the pipeline's own stages, so its artifacts land in the run cache and a later full
run with the same config reuses them. Use it to see whether a task is learnable at all by the
student before paying for the teachers.

    python scripts/ceiling.py experiment=cosmosqa [more Hydra overrides]

Prints the ceiling's val and test accuracy, the chance level plus two standard errors on test,
and ONE final line of key=value figures.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from weaks2strong.evaluate import classification_metrics  # noqa: E402
from weaks2strong.pipeline.classification.distill import (  # noqa: E402
    ceiling_config,
    distill_classifier,
    fitted_student,
    test_predictions,
)
from weaks2strong.pipeline.classification.evaluate import cached_test_predictions, tested_rows  # noqa: E402
from weaks2strong.pipeline.common.config import build  # noqa: E402
from weaks2strong.pipeline.common.tables import prob_columns, split_frame, split_probs  # noqa: E402
from weaks2strong.runtime.artifacts import Store  # noqa: E402
from weaks2strong.runtime.resolvers import register_resolvers  # noqa: E402


def main(overrides: list[str]) -> int:
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["logger=csv", "paths.output_dir=runs/ceiling", *overrides])
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    task = build(cfg.task, "task", _convert_="all")
    dev = task.without_test()  # the stage sees the sealed task, as in a full run
    store = Store(cfg.paths.cache_dir)
    ceiling = distill_classifier(dev, None, cfg, store, run_dir, stage="ceiling")
    tested = cached_test_predictions(store, task, ceiling, lambda: split_frame(
        task, "test", test_predictions(task, fitted_student(dev, None, ceiling, ceiling_config(cfg)))))
    k, gold = task.num_classes, task.labels("test")
    out = {"task": task.name,
           "val": classification_metrics(split_probs(ceiling, "predictions", dev, "val"), dev.labels("val")),
           "test": classification_metrics(tested_rows(task, tested)[prob_columns(k)].to_numpy(), gold),
           "n_test": len(gold), "majority_answer_test": float(np.bincount(gold).max() / len(gold)),
           "chance_plus_2se": 1 / k + 2 * ((1 / k) * (1 - 1 / k) / len(gold)) ** 0.5}
    print(json.dumps(out, indent=1))
    (run_dir / "ceiling_metrics.json").write_text(json.dumps(out, indent=1))
    print(f"task={task.name} ceiling_val={out['val']['accuracy']:.4f} ceiling_test={out['test']['accuracy']:.4f} "
          f"chance_plus_2se={out['chance_plus_2se']:.4f} majority_answer={out['majority_answer_test']:.4f} "
          f"clears={int(out['test']['accuracy'] > out['chance_plus_2se'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
