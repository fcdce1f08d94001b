"""The candidate aggregations of a sciq_gen run, from its cached teacher artifacts (no model runs):
each aggregation's top-candidate EM on w2s_train and val (gold used only for this report), how
often the gold answer is among the candidates at all, the Bayesian model's teacher-accuracy
estimates against the truth (anchored on val and not), and the posterior's reliability table.

    .venv/bin/python benchmarks/aggregate_gen.py [seed=0] [any other w2s override]

The run must have reached the aggregate stage (``w2s experiment=sciq_gen seed=...``); the script
fails with the pipeline's one-line error otherwise. Ends with one key=value line, and writes what it
printed to docs/results/aggregate_gen.md.
"""
from __future__ import annotations

import sys

import numpy as np
from hydra import compose, initialize_config_dir

from weaks2strong.aggregate.generation import BayesianCandidateAggregator, joint_scores, majority_vote, teacher_answers
from weaks2strong.cli import CONFIG_DIR
from weaks2strong.pipeline.common.config import build
from weaks2strong.pipeline.generation.aggregate import dev_arrays, gold_index
from weaks2strong.pipeline.generation.teach import candidate_pool, propose, score
from weaks2strong.runtime.artifacts import Store
from weaks2strong.tasks import DEV_SPLITS


def main(overrides: list[str]) -> None:
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=sciq_gen", *overrides])
    dev = build(cfg.task, "task", _convert_="all").without_test()
    store = Store(cfg.paths.cache_dir)
    proposals = propose(dev, cfg.teachers, store)
    pools = {s: candidate_pool(dev, proposals, s, cfg.generation.max_candidates) for s in DEV_SPLITS}
    scores = score(dev, cfg.teachers, pools, store)
    names = list(scores)
    # the fit sees val's gold (anchor=val) as the pipeline does; gold on every row is for this report only
    probs, logprobs, counts, clamp = dev_arrays(dev, scores, pools, anchor=True)
    width = probs.shape[-1]
    gold = np.concatenate([gold_index(pools[s], dev.answers(s)) for s in DEV_SPLITS])
    n = len(pools["w2s_train"])
    train, val = slice(0, n), slice(n, None)
    answers, _ = teacher_answers(probs)

    def em(posterior, rows):
        return float(np.mean(posterior[rows, :width].argmax(-1) == gold[rows]))

    from _results import Recording  # benchmarks/_results.py: what follows is printed and written

    record = Recording()
    print(f"gold among the candidates: w2s_train {np.mean(gold[train] < counts[train]):.3f}, "
          f"val {np.mean(gold[val] < counts[val]):.3f}; mean candidates {counts.mean():.2f}\n")
    rows = {f"single {t}": np.eye(width + 1)[np.where(answers[:, i] >= 0, answers[:, i], width)]
            for i, t in enumerate(names)}
    rows["majority"] = majority_vote(probs, counts)
    rows["joint (equal weights)"] = joint_scores(logprobs, None, n_candidates=counts)
    fits = {}
    for label, anchor in (("bayes anchored", True), ("bayes unanchored", False)):
        model = BayesianCandidateAggregator(**{k: v for k, v in cfg.aggregator.model.items() if k != "_target_"})
        fits[label] = model.fit(probs, counts, gold=clamp if anchor else None)
        rows[label] = model.predict_proba(probs, counts)
    print(f"{'aggregation':28s} {'EM w2s_train':>13s} {'EM val':>8s}")
    for label, post in rows.items():
        print(f"{label:28s} {em(post, train):13.3f} {em(post, val):8.3f}")
    truth = [float(np.mean(answers[train, i] == gold[train])) for i in range(len(names))]
    print(f"\n{'teacher':16s} {'true top-answer acc (w2s_train)':>32s} " + " ".join(f"{k:>18s}" for k in fits))
    for i, t in enumerate(names):
        print(f"{t:16s} {truth[i]:32.3f} " + " ".join(f"{m.teacher_accuracy_[i]:18.3f}" for m in fits.values()))
    post = rows["bayes anchored"][train]
    conf = post[:, :width].max(-1)
    hit = post[:, :width].argmax(-1) == gold[train]
    print("\nreliability of the anchored posterior on w2s_train (confidence quintile: mean confidence, EM)")
    for q, part in enumerate(np.array_split(np.argsort(conf, kind="stable"), 5)):
        print(f"  {q + 1}: {conf[part].mean():.3f} {hit[part].mean():.3f}")
    mae = {k: float(np.mean(np.abs(np.array(truth) - m.teacher_accuracy_))) for k, m in fits.items()}
    print(f"\nbayes_w2s={em(rows['bayes anchored'], train):.4f} majority_w2s={em(rows['majority'], train):.4f} "
          f"joint_w2s={em(rows['joint (equal weights)'], train):.4f} "
          f"best_single_w2s={max(em(rows[f'single {t}'], train) for t in names):.4f} "
          f"gold_in_pool={np.mean(gold[train] < counts[train]):.3f} teacher_mae_anchored={mae['bayes anchored']:.3f} "
          f"teacher_mae_unanchored={mae['bayes unanchored']:.3f}")
    record.write("aggregate_gen", "Candidate aggregations of a sciq_gen run (cached teacher artifacts)", argv=overrides)


if __name__ == "__main__":
    main(sys.argv[1:])
