"""The generation path's aggregate stage: the candidate aggregator (``aggregator.method``: bayes |
majority | joint | single) turns the teachers' scores into q_i(c) and a weight w_i per example
(``gen_aggregate``); evaluate applies the fitted globals to the teachers' test scores."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import aggregator_anchor, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage, recall_or_fit, remember
from weaks2strong.pipeline.generation.teach import gen_task_key, score_arrays
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks import DEV_SPLITS
from weaks2strong.tasks.generation import GenerationTask, exact_match, normalize_answer, token_f1

log = logging.getLogger("weaks2strong.pipeline")
ANCHOR = "val"  # aggregator.anchor where the config sets none: val's gold observed


def gold_index(pool: list, answers: list[str]) -> np.ndarray:
    """Index of the gold answer among an example's candidates, or the example's "none" slot (len(pool[i]))."""
    out = []
    for p, gold in zip(pool, answers):
        norms = [n for n, _ in p]
        g = normalize_answer(gold)
        out.append(norms.index(g) if g in norms else len(p))
    return np.array(out, dtype=np.int64)


def candidate_model(aggregator_cfg: DictConfig, teacher: int):
    """The configured candidate aggregator (a ``CandidateLabelModel``), unfitted: ``aggregator.model``
    (its ``_target_``) for bayes, the method's class in ``aggregate.generation.METHODS`` otherwise;
    ``teacher`` (an index) is the best teacher on val, which the single-teacher baseline answers with."""
    from weaks2strong.aggregate.generation import METHODS

    method = aggregator_cfg.method
    if method not in METHODS:
        raise UserInputError(f"aggregator.method='{method}' is not one of bayes, majority, joint, single")
    if method == "bayes":
        return build(aggregator_cfg.model, "aggregator.model")
    return METHODS[method](teacher=teacher) if method == "single" else METHODS[method]()


def model_scores(model, probs, logprobs, greedy) -> np.ndarray:
    """The (N, T, C) numbers ``model`` reads (its ``reads``): probabilities, log-scores, or one-hot
    greedy answers (a NaN row where a teacher's greedy answer is none of the candidates)."""
    if model.reads == "probs":
        return probs
    if model.reads == "logprobs":
        return logprobs
    one_hot = np.full(probs.shape, np.nan)
    ex, te = np.nonzero(greedy >= 0)
    one_hot[ex, te] = 0.0
    one_hot[ex, te, greedy[ex, te]] = 1.0
    return one_hot


def fit_candidates(model, probs, counts, gold):
    """The one place the candidate aggregator is fitted (on the dev rows that have candidates; gold
    only reaches a model that ``supports_gold``). A rule that learns nothing comes back as it is."""
    if not model.needs_fit:
        return model
    return model.fit(model_scores(model, probs, None, None), counts, gold=gold if model.supports_gold else None)


def greedy_index(task: GenerationTask, proposals: dict[str, Artifact], pool: list, split: str) -> np.ndarray:
    """(N, T): each teacher's greedy answer as a candidate index (-1: it gave an empty answer)."""
    out = np.full((len(pool), len(proposals)), -1, dtype=np.int64)
    index = {eid: i for i, eid in enumerate(task.split(split)["example_id"])}
    for t, artifact in enumerate(proposals.values()):
        table = artifact.table("proposals")
        for eid, norm in table[(table["split"] == split) & (table["rank"] == 0)][["example_id", "norm"]].itertuples(
                index=False):
            i = index[eid]
            norms = [m for m, _ in pool[i]]
            if norm in norms:
                out[i, t] = norms.index(norm)
    return out


def best_teacher_by_val_em(task: GenerationTask, proposals: dict[str, Artifact]) -> str:
    scores = {name: em_of(teacher_answers(task, a, "val"), task.answers("val"))["em"] for name, a in proposals.items()}
    return max(scores, key=scores.get)


def teacher_answers(task: GenerationTask, artifact: Artifact, split: str) -> list[str]:
    table = artifact.table("proposals")
    first = table[(table["split"] == split) & (table["rank"] == 0)]
    greedy = dict(zip(first["example_id"], first["text"]))
    return [greedy.get(eid, "") for eid in task.split(split)["example_id"]]


def em_of(predictions: list[str], answers: list[str]) -> dict[str, float]:
    return {"em": float(np.mean([exact_match(p, a) for p, a in zip(predictions, answers)])),
            "f1": float(np.mean([token_f1(p, a) for p, a in zip(predictions, answers)]))}


def top_answers(pool: list, posterior: np.ndarray) -> list[str]:
    """The posterior's top real candidate per example ("" when it has none)."""
    out = []
    for p, row in zip(pool, posterior):
        out.append(p[int(np.argmax(row[: len(p)]))][1] if p else "")
    return out


def aggregate_candidates(task: GenerationTask, proposals, scores, pools, cfg: DictConfig, store: Store) -> Artifact:
    method = cfg.aggregator.method
    best = best_teacher_by_val_em(task, proposals)
    key = stable_hash(gen_task_key(task), sorted(a.key for a in scores.values()), config_slice(cfg.aggregator), best)

    def compute():
        started = time.perf_counter()
        names = list(scores)
        probs, logprobs, counts, gold = dev_arrays(task, scores, pools,
                                                   aggregator_anchor(cfg.aggregator, ANCHOR) == "val")
        n_train = len(pools["w2s_train"])
        greedy = np.concatenate([greedy_index(task, proposals, pools[s], s) for s in DEV_SPLITS])
        has = counts > 0
        model = fit_candidates(candidate_model(cfg.aggregator, names.index(best)), probs[has], counts[has], gold[has])
        posterior = np.zeros((len(counts), probs.shape[-1] + 1))
        posterior[~has, -1] = 1.0
        posterior[has] = model.predict_proba(model_scores(model, probs[has], logprobs[has], greedy[has]), counts[has])
        fitted = model if model.needs_fit else None
        difficulty = np.full(len(counts), np.nan)
        if fitted is not None and getattr(fitted, "difficulty_", None) is not None:
            difficulty[has] = fitted.difficulty_
        remember("gen_aggregate", key, model)
        rows, examples = [], []
        for offset, split in ((0, "w2s_train"), (n_train, "val")):
            ids = task.split(split)["example_id"].tolist()
            for i, (eid, p) in enumerate(zip(ids, pools[split])):
                row = posterior[offset + i]
                top = float(row[: len(p)].max()) if p else 0.0  # the best real candidate's posterior mass
                weight = top if cfg.aggregator.get("weighting", "confidence") != "none" else 1.0
                examples.append((split, eid, len(p), float(row[-1]), top, weight if p else 0.0,
                                 float(difficulty[offset + i])))
                rows.extend((split, eid, c, n, text, float(row[c])) for c, (n, text) in enumerate(p))
        teachers = {}
        if fitted is not None:
            teachers = {name: {"accuracy": float(fitted.teacher_accuracy_[t]),
                               "reliability": np.asarray(fitted.reliability_[t]).tolist(),
                               "interval": np.asarray(fitted.reliability_interval_[t]).tolist()}
                        for t, name in enumerate(names)}
        with store.create("gen_aggregate", key, {"task": gen_task_key(task)},
                          {"aggregator": config_slice(cfg.aggregator), "best_teacher": best}) as tmp:
            write_table(tmp / "targets.parquet", pd.DataFrame(rows, columns=["split", "example_id", "candidate", "norm",
                                                                             "text", "q"]))
            write_table(tmp / "examples.parquet", pd.DataFrame(examples, columns=[
                "split", "example_id", "n_candidates", "none_prob", "confidence", "weight", "difficulty"]))
            write_json(tmp / "summary.json", {"method": method, "best_teacher": best, "teachers": teachers,
                                              "excluded": {s: int(sum(not p for p in pools[s])) for s in DEV_SPLITS},
                                              "seconds": time.perf_counter() - started})
        log.info("aggregate: %s in %.1f s", method, time.perf_counter() - started)

    return cached_stage(store, "gen_aggregate", key, compute, reused="aggregate:")


def dev_arrays(task: GenerationTask, scores: dict[str, Artifact], pools: dict[str, list], anchor: bool):
    """w2s_train's rows then val's, as the aggregator is fitted on them: (probs (N, T, C), logprobs
    (N, T, C), n_candidates (N,), gold (N,)). gold is -1 (unknown) except, with ``anchor``, on val:
    the gold answer's candidate index, or C for "none of them"."""
    arrays = {s: score_arrays(task, scores, pools[s], s) for s in DEV_SPLITS}
    width = max(a[0].shape[-1] for a in arrays.values())

    def stack(i):
        return np.concatenate([np.pad(arrays[s][i], [(0, 0), (0, 0), (0, width - arrays[s][i].shape[-1])])
                               for s in DEV_SPLITS])

    counts = np.concatenate([arrays[s][2] for s in DEV_SPLITS])
    gold = np.full(len(counts), -1, dtype=np.int64)
    if anchor:
        n_train = len(pools["w2s_train"])
        val_gold = gold_index(pools["val"], task.answers("val"))
        gold[n_train:] = np.where(val_gold == counts[n_train:], width, val_gold)
    return stack(0), stack(1), counts, gold


def aggregate_test(task: GenerationTask, dev: GenerationTask, cfg: DictConfig, scores, pools, targets: Artifact,
                   test_proposals, test_scores, test_pool) -> np.ndarray:
    """The aggregation's posterior on test: the aggregator fitted in aggregate (or, where aggregate was
    reused, fitted again the same way: deterministic) applied to the teachers' test scores."""
    summary = targets.record("summary")
    probs, logprobs, counts = score_arrays(task, test_scores, test_pool, "test")
    greedy = greedy_index(task, test_proposals, test_pool, "test")
    has = counts > 0
    posterior = np.zeros((len(counts), probs.shape[-1] + 1))
    posterior[~has, -1] = 1.0

    def fit():
        model = candidate_model(cfg.aggregator, list(scores).index(summary["best_teacher"]))
        if not model.needs_fit:
            return model
        anchored = aggregator_anchor(cfg.aggregator, ANCHOR) == "val"
        dev_probs, _, dev_counts, gold = dev_arrays(dev, scores, pools, anchored)
        keep = dev_counts > 0
        return fit_candidates(model, dev_probs[keep], dev_counts[keep], gold[keep])

    model = recall_or_fit("gen_aggregate", targets.key, fit, keep=False)
    posterior[has] = model.predict_proba(model_scores(model, probs[has], logprobs[has], greedy[has]), counts[has])
    return posterior
