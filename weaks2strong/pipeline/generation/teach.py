"""The generation path's teach stage: propose → pool → score.

1. Each teacher proposes answers (greedy + samples) for w2s_train and val: ``gen_propose``.
2. An example's candidate set is the union of the teachers' distinct normalised answers (most voted
   first, at most ``generation.max_candidates``); an example with none is excluded and counted.
3. Every teacher scores every candidate of the set (``gen_score``): LMs by the candidate's
   log-likelihood after their prompt, retrieval by its similarity mass.
"""
from __future__ import annotations

import logging
import time
from collections import Counter

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import TEACHER_VOLATILE_KEYS, build, config_slice
from weaks2strong.pipeline.common.stage import cached_stage, recall_or_fit
from weaks2strong.runtime.artifacts import Artifact, Store, frame_hash, stable_hash, write_json, write_table
from weaks2strong.tasks import DEV_SPLITS
from weaks2strong.tasks.generation import GenerationTask, normalize_answer

log = logging.getLogger("weaks2strong.pipeline")


def gen_task_key(task: GenerationTask) -> str:
    readable = [s for s in task.splits if not (s == "test" and task.sealed)]
    return stable_hash(task.name, task.prompt, {s: frame_hash(task.split(s)) for s in readable})


def fitted_teacher(task: GenerationTask, name: str, cfg: DictConfig, key: str):
    """The teacher fitted in this process, or fitted now (deterministic in its config and weak_train)."""
    def fit():
        teacher = build(cfg, f"teachers.{name}")
        started = time.perf_counter()
        teacher.fit(task)
        log.info("teach: %s fitted in %.1f s", name, time.perf_counter() - started)
        return teacher

    return recall_or_fit("gen_teacher", key, fit)


def generation_teacher_key(task: GenerationTask, name: str, cfg: DictConfig) -> str:
    """The fitted teacher's key: weak_train and its config (the same before and after test is unsealed)."""
    return stable_hash(gen_task_key(task.without_test()), name, config_slice(cfg, TEACHER_VOLATILE_KEYS))


def _each_teacher(task: GenerationTask, teachers_cfg: DictConfig, store: Store, stage: str, table: str, inputs: dict,
                  table_of) -> dict[str, Artifact]:
    """One artifact per teacher: ``table_of(teacher)`` -> a table, keyed by the teacher, ``inputs`` and the rows."""
    out = {}
    for name, cfg in teachers_cfg.items():
        tkey = generation_teacher_key(task, name, cfg)
        key = stable_hash(tkey, *inputs.values(), gen_task_key(task))

        def compute(name=name, cfg=cfg, tkey=tkey, key=key):
            teacher = fitted_teacher(task, name, cfg, tkey)
            started = time.perf_counter()
            frame = table_of(teacher)
            with store.create(stage, key, {"task": gen_task_key(task), **{k: str(v) for k, v in inputs.items()}},
                              {"teacher": name, "tkey": tkey}) as tmp:
                write_table(tmp / f"{table}.parquet", frame)
                write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started})
            log.info("%s: %s done in %.1f s", stage, name, time.perf_counter() - started)

        out[name] = cached_stage(store, stage, key, compute, reused=f"{stage}: {name}")
    return out


def propose(task: GenerationTask, teachers_cfg: DictConfig, store: Store, splits=DEV_SPLITS) -> dict[str, Artifact]:
    """Each teacher's answers (rank 0 greedy, then samples) on ``splits``."""
    def table_of(teacher) -> pd.DataFrame:
        frames = []
        for split in splits:
            ids = task.split(split)["example_id"].tolist()
            frames.append(pd.DataFrame([(split, ids[i], r, text, normalize_answer(text))
                                        for i, row in enumerate(teacher.propose(task, split))
                                        for r, text in enumerate(row)],
                                       columns=["split", "example_id", "rank", "text", "norm"]))
        return pd.concat(frames, ignore_index=True)

    return _each_teacher(task, teachers_cfg, store, "gen_propose", "proposals", {"splits": list(splits)}, table_of)


def candidate_pool(task: GenerationTask, proposals: dict[str, Artifact], split: str, max_candidates: int):
    """Per example of ``split``: [(norm, text), ...], most voted first (ties: first proposed). Empty
    answers are dropped; an example that ends with no candidate gets an empty list."""
    table = pd.concat([a.table("proposals") for a in proposals.values()], ignore_index=True)
    table = table[(table["split"] == split) & (table["norm"] != "")]
    by_example = {eid: g for eid, g in table.groupby("example_id", sort=False)}
    pools = []
    for eid in task.split(split)["example_id"]:
        group = by_example.get(eid)
        if group is None:
            pools.append([])
            continue
        votes = Counter(group["norm"])
        first_text = dict(zip(group["norm"][::-1], group["text"][::-1]))  # earliest surface form wins
        order = sorted(votes, key=lambda n: (-votes[n], list(group["norm"]).index(n)))[:max_candidates]
        pools.append([(n, first_text[n]) for n in order])
    return pools


def score(task: GenerationTask, teachers_cfg: DictConfig, pools: dict[str, list], store: Store) -> dict[str, Artifact]:
    """Each teacher's score of every candidate in the pools."""
    pool_hash = stable_hash({s: [[n for n, _ in p] for p in pools[s]] for s in sorted(pools)})

    def table_of(teacher) -> pd.DataFrame:
        frames = []
        for split, pool in pools.items():
            ids = task.split(split)["example_id"].tolist()
            results = teacher.score(task, split, [[text for _, text in p] for p in pool])
            rows = [(split, ids[i], c, n, float(lp[c]), float(cnt[c]) if cnt is not None else np.nan)
                    for i, (p, (lp, cnt)) in enumerate(zip(pool, results)) for c, (n, _) in enumerate(p)]
            frames.append(pd.DataFrame(rows, columns=["split", "example_id", "candidate", "norm", "logprob",
                                                      "n_tokens"]))
        return pd.concat(frames, ignore_index=True)

    return _each_teacher(task, teachers_cfg, store, "gen_score", "scores", {"pool": pool_hash}, table_of)


def score_arrays(task: GenerationTask, scores: dict[str, Artifact], pool: list, split: str):
    """(probs (N, T, C), logprobs (N, T, C), n_candidates (N,)) over the examples that have candidates.
    A teacher's distribution over an example's candidates is the softmax of its length-normalised
    log-likelihood (retrieval: of its log mass); logprobs keep the raw sums, for joint decoding."""
    n = len(pool)
    width = max(1, max((len(p) for p in pool), default=1))
    probs = np.zeros((n, len(scores), width))
    logprobs = np.full((n, len(scores), width), -np.inf)
    index = {eid: i for i, eid in enumerate(task.split(split)["example_id"])}
    for t, artifact in enumerate(scores.values()):
        table = artifact.table("scores")
        table = table[table["split"] == split]
        rows = table["example_id"].map(index).to_numpy()
        cols = table["candidate"].to_numpy()
        raw = table["logprob"].to_numpy()
        normed = np.where(table["n_tokens"].notna(), raw / table["n_tokens"].fillna(1).clip(lower=1), raw)
        logprobs[rows, t, cols] = raw
        probs[rows, t, cols] = normed
    counts = np.array([len(p) for p in pool])
    valid = np.arange(width)[None, None, :] < counts[:, None, None]
    z = np.where(valid, probs, -np.inf)
    z = z - z.max(-1, keepdims=True)
    probs = np.where(valid, np.exp(z), 0.0)
    probs /= probs.sum(-1, keepdims=True)
    logprobs = np.where(valid, logprobs, 0.0)
    # retrieval's "logprob" is its log mass: normalise it, so joint decoding adds a log-probability
    for t, artifact in enumerate(scores.values()):
        if np.isnan(artifact.table("scores")["n_tokens"]).all():
            logprobs[:, t] = np.where(valid[:, 0], np.log(np.clip(probs[:, t], 1e-300, None)), 0.0)
    return probs, logprobs, counts
