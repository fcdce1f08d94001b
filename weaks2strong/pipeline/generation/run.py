"""The generation run (``w2s experiment=sciq_gen``): teach (propose → pool → score) → aggregate →
distill (ceiling, student) → (align) → evaluate.

1. Each teacher proposes answers for w2s_train and val; an example's candidates are the teachers'
   distinct answers; every teacher scores every candidate (``teach.py``).
2. The candidate aggregator turns the scores into q_i(c) and a weight w_i per example (``aggregate.py``).
3. The causal-LM student learns by confidence-weighted teacher forcing on w2s_train (the ceiling on
   gold answers), and answers val greedily (``distill.py``); with ``align=dpo`` it is then DPO'd on
   the posterior's pairs and, as the alignment ceiling, on gold pairs (``align.py``).
4. evaluate unseals test: teachers, aggregates, the untrained student k-shot, ceiling and student
   answer it; EM/F1 per row, PGR on EM (``evaluate.py``).
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from weaks2strong.pipeline.generation.aggregate import aggregate_candidates
from weaks2strong.pipeline.generation.align import run_align
from weaks2strong.pipeline.generation.distill import distill_lm
from weaks2strong.pipeline.generation.evaluate import evaluate
from weaks2strong.pipeline.generation.teach import candidate_pool, propose, score
from weaks2strong.runtime import distributed
from weaks2strong.runtime.artifacts import Store
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks import DEV_SPLITS
from weaks2strong.tasks.generation import GenerationTask


def run(cfg: DictConfig, task: GenerationTask, store: Store, run_dir: Path) -> dict:
    if not distributed.is_main() or distributed.world_size() > 1:
        raise UserInputError("the generation path runs in one process for now (trainer.devices=1)")
    dev = task.without_test()
    g = cfg.generation
    proposals = propose(dev, cfg.teachers, store)
    pools = {s: candidate_pool(dev, proposals, s, g.max_candidates) for s in DEV_SPLITS}
    scores = score(dev, cfg.teachers, pools, store)
    targets = aggregate_candidates(dev, proposals, scores, pools, cfg, store)
    ceiling = distill_lm(dev, None, cfg, store, run_dir, stage="gen_ceiling")
    student = distill_lm(dev, targets, cfg, store, run_dir, stage="gen_student")
    aligned = run_align(dev, cfg, store, run_dir, pools, targets, student)
    return evaluate(task, dev, cfg, store, run_dir, proposals, scores, pools, targets, ceiling, student, aligned)
