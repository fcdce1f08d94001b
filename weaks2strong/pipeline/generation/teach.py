"""The generation path: propose → pool → score → aggregate → distill (ceiling, student) → evaluate.

1. Each teacher proposes answers (greedy + samples) for w2s_train and val: ``gen_propose``.
2. An example's candidate set is the union of the teachers' distinct normalised answers (most voted
   first, at most ``generation.max_candidates``); an example with none is excluded and counted.
3. Every teacher scores every candidate of the set (``gen_score``): LMs by the candidate's
   log-likelihood after their prompt, retrieval by its similarity mass.
4. The candidate aggregator (``aggregator.method``: bayes | majority | joint | single) turns the
   scores into q_i(c) and a weight w_i per example (``gen_aggregate``).
5. The causal-LM student learns by confidence-weighted teacher forcing on w2s_train (the ceiling on
   gold answers), and answers val greedily (``gen_ceiling``, ``gen_student``).
6. evaluate unseals test: teachers, aggregates, the untrained student k-shot, ceiling and student
   answer it; EM/F1 per row, PGR on EM.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from weaks2strong.pipeline.compute import exclusive, recall, remember
from weaks2strong.pipeline.config import TEACHER_VOLATILE_KEYS, build, config_slice, make_loggers
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_weights
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.tasks.generation import GenerationTask, exact_match, normalize_answer, token_f1
from weaks2strong.zoo import resolve_model

log = logging.getLogger("weaks2strong.pipeline")
DEV = ("w2s_train", "val")


def gen_task_key(task: GenerationTask) -> str:
    from weaks2strong.runtime.artifacts import frame_hash

    readable = [s for s in task.splits if not (s == "test" and task.sealed)]
    return stable_hash(task.name, task.prompt, {s: frame_hash(task.split(s)) for s in readable})


# ------------------------------------------------------------------ teach: propose, pool, score

def _teacher(task: GenerationTask, name: str, cfg: DictConfig, key: str):
    """The teacher fitted in this process, or fitted now (deterministic in its config and weak_train)."""
    teacher = recall("gen_teacher", key)
    if teacher is None:
        teacher = build(cfg, f"teachers.{name}")
        started = time.perf_counter()
        teacher.fit(task)
        log.info("teach: %s fitted in %.1f s", name, time.perf_counter() - started)
        remember("gen_teacher", key, teacher)
    return teacher


def teacher_key(task: GenerationTask, name: str, cfg: DictConfig) -> str:
    """The fitted teacher's key: weak_train and its config (the same before and after test is unsealed)."""
    return stable_hash(gen_task_key(task.without_test()), name, config_slice(cfg, TEACHER_VOLATILE_KEYS))


def _each_teacher(task: GenerationTask, teachers_cfg: DictConfig, store: Store, stage: str, table: str, inputs: dict,
                  compute) -> dict[str, Artifact]:
    """One artifact per teacher: ``compute(teacher)`` -> a table, keyed by the teacher, ``inputs`` and the rows."""
    out = {}
    for name, cfg in teachers_cfg.items():
        tkey = teacher_key(task, name, cfg)
        key = stable_hash(tkey, *inputs.values(), gen_task_key(task))
        with exclusive(store, stage, key) as found:
            if found:
                log.info("%s: %s reused (%s)", stage, name, found.path)
                out[name] = found
                continue
            teacher = _teacher(task, name, cfg, tkey)
            started = time.perf_counter()
            frame = compute(teacher)
            with store.create(stage, key, {"task": gen_task_key(task), **{k: str(v) for k, v in inputs.items()}},
                              {"teacher": name, "tkey": tkey}) as tmp:
                write_table(tmp / f"{table}.parquet", frame)
                write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started})
            out[name] = store.find(stage, key)
            log.info("%s: %s done in %.1f s", stage, name, time.perf_counter() - started)
    return out


def propose(task: GenerationTask, teachers_cfg: DictConfig, store: Store, splits=DEV) -> dict[str, Artifact]:
    """Each teacher's answers (rank 0 greedy, then samples) on ``splits``."""
    def compute(teacher) -> pd.DataFrame:
        frames = []
        for split in splits:
            ids = task.split(split)["example_id"].tolist()
            frames.append(pd.DataFrame([(split, ids[i], r, text, normalize_answer(text))
                                        for i, row in enumerate(teacher.propose(task, split))
                                        for r, text in enumerate(row)],
                                       columns=["split", "example_id", "rank", "text", "norm"]))
        return pd.concat(frames, ignore_index=True)

    return _each_teacher(task, teachers_cfg, store, "gen_propose", "proposals", {"splits": list(splits)}, compute)


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

    def compute(teacher) -> pd.DataFrame:
        frames = []
        for split, pool in pools.items():
            ids = task.split(split)["example_id"].tolist()
            results = teacher.score(task, split, [[text for _, text in p] for p in pool])
            rows = [(split, ids[i], c, n, float(lp[c]), float(cnt[c]) if cnt is not None else np.nan)
                    for i, (p, (lp, cnt)) in enumerate(zip(pool, results)) for c, (n, _) in enumerate(p)]
            frames.append(pd.DataFrame(rows, columns=["split", "example_id", "candidate", "norm", "logprob",
                                                      "n_tokens"]))
        return pd.concat(frames, ignore_index=True)

    return _each_teacher(task, teachers_cfg, store, "gen_score", "scores", {"pool": pool_hash}, compute)


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


# ------------------------------------------------------------------ aggregate

def gold_index(pool: list, answers: list[str]) -> np.ndarray:
    """Index of the gold answer among an example's candidates, or the example's "none" slot (len(pool[i]))."""
    out = []
    for p, gold in zip(pool, answers):
        norms = [n for n, _ in p]
        g = normalize_answer(gold)
        out.append(norms.index(g) if g in norms else len(p))
    return np.array(out, dtype=np.int64)


def aggregate_posterior(method: str, model, probs, logprobs, counts, gold, teacher: int | None, greedy):
    """(posterior (N, C+1), fitted model or None): the last column is "none of the candidates"."""
    from weaks2strong.aggregate.candidates import joint_scores, majority_vote

    n, _, width = probs.shape
    if method == "bayes":
        model.fit(probs, counts, gold=gold)
        return model.predict_proba(probs, counts, gold=None), model
    if method == "majority":
        return majority_vote(probs, counts), None
    if method == "joint":
        return joint_scores(logprobs, None, n_candidates=counts), None
    if method == "single":  # the best teacher's greedy answer
        post = np.zeros((n, width + 1))
        post[np.arange(n), np.where(greedy[:, teacher] >= 0, greedy[:, teacher], counts)] = 1.0
        return post, None
    raise UserInputError(f"aggregator.method='{method}' is not one of bayes, majority, joint, single")


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


def best_teacher_on_val(task: GenerationTask, proposals: dict[str, Artifact]) -> str:
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


def aggregate(task: GenerationTask, proposals, scores, pools, cfg: DictConfig, store: Store) -> Artifact:
    method = cfg.aggregator.method
    best = best_teacher_on_val(task, proposals)
    key = stable_hash(gen_task_key(task), sorted(a.key for a in scores.values()), config_slice(cfg.aggregator), best)
    with exclusive(store, "gen_aggregate", key) as found:
        if found:
            log.info("aggregate: reused (%s)", found.path)
            return found
        started = time.perf_counter()
        names = list(scores)
        probs, logprobs, counts, gold = dev_arrays(task, scores, pools, cfg.aggregator.get("anchor", "val") == "val")
        n_train = len(pools["w2s_train"])
        greedy = np.concatenate([greedy_index(task, proposals, pools[s], s) for s in DEV])
        has = counts > 0
        model = build(cfg.aggregator.model, "aggregator.model") if method == "bayes" else None
        posterior = np.zeros((len(counts), probs.shape[-1] + 1))
        posterior[~has, -1] = 1.0
        post, fitted = aggregate_posterior(method, model, probs[has], logprobs[has], counts[has], gold[has],
                                           names.index(best), greedy[has])
        posterior[has] = post
        difficulty = np.full(len(counts), np.nan)
        if fitted is not None and getattr(fitted, "difficulty_", None) is not None:
            difficulty[has] = fitted.difficulty_
        remember("gen_aggregate", key, fitted)
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
                                              "excluded": {s: int(sum(not p for p in pools[s])) for s in DEV},
                                              "seconds": time.perf_counter() - started})
        log.info("aggregate: %s in %.1f s", method, time.perf_counter() - started)
        return store.find("gen_aggregate", key)


def dev_arrays(task: GenerationTask, scores: dict[str, Artifact], pools: dict[str, list], anchor: bool):
    """w2s_train's rows then val's, as the aggregator is fitted on them: (probs (N, T, C), logprobs
    (N, T, C), n_candidates (N,), gold (N,)). gold is -1 (unknown) except, with ``anchor``, on val:
    the gold answer's candidate index, or C for "none of them"."""
    arrays = {s: score_arrays(task, scores, pools[s], s) for s in DEV}
    width = max(a[0].shape[-1] for a in arrays.values())

    def stack(i):
        return np.concatenate([np.pad(arrays[s][i], [(0, 0), (0, 0), (0, width - arrays[s][i].shape[-1])])
                               for s in DEV])

    counts = np.concatenate([arrays[s][2] for s in DEV])
    gold = np.full(len(counts), -1, dtype=np.int64)
    if anchor:
        n_train = len(pools["w2s_train"])
        val_gold = gold_index(pools["val"], task.answers("val"))
        gold[n_train:] = np.where(val_gold == counts[n_train:], width, val_gold)
    return stack(0), stack(1), counts, gold



# ------------------------------------------------------------------ distill

def training_rows(task: GenerationTask, targets: Artifact | None, min_prob: float):
    """CandidateRows for w2s_train: the aggregate's q (renormalised over the candidates kept, those with
    q >= min_prob) and weight, or the gold answer with q = w = 1 (the ceiling)."""
    from weaks2strong.models.causal_lm import CandidateRow

    split = task.split("w2s_train")
    prompts = dict(zip(split["example_id"], task.prompts("w2s_train")))
    if targets is None:
        return [CandidateRow(p, [a], [1.0]) for p, a in zip(task.prompts("w2s_train"), task.answers("w2s_train"))]
    table = targets.table("targets")
    table = table[(table["split"] == "w2s_train") & (table["q"] >= min_prob)]
    weights = targets.table("examples").set_index("example_id")["weight"]
    rows = []
    for eid, group in table.groupby("example_id", sort=False):
        q = group["q"].to_numpy()
        rows.append(CandidateRow(prompts[eid], group["text"].tolist(), (q / q.sum()).tolist(), float(weights[eid])))
    return rows


def val_rows(task: GenerationTask):
    from weaks2strong.models.causal_lm import CandidateRow

    return [CandidateRow(p, [a], [1.0]) for p, a in zip(task.prompts("val"), task.answers("val"))]


def distill(task: GenerationTask, targets: Artifact | None, cfg: DictConfig, store: Store, run_dir: Path,
            stage: str) -> Artifact:
    source = targets.key if targets is not None else "gold"
    key = stable_hash(gen_task_key(task), source, config_slice(cfg.student), config_slice(cfg.trainer),
                      cfg.seeds.student)
    with exclusive(store, stage, key) as found:
        if found:
            log.info("%s: reused (%s)", stage, found.path)
            return found
        import pytorch_lightning as pl

        started = time.perf_counter()
        pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
        parts = build_student(task, targets, cfg)
        trainer = instantiate(cfg.trainer, logger=make_loggers(cfg.get("logger"), stage), enable_checkpointing=False,
                              default_root_dir=str(run_dir))
        trainer.fit(parts["module"], datamodule=parts["data"])
        remember(stage, key, parts)
        answers = student_answers(parts, task, "val", cfg)
        with store.create(stage, key, {"task": gen_task_key(task), "targets": source},
                          {"student": config_slice(cfg.student), "trainer": config_slice(cfg.trainer)}) as tmp:
            ids = task.split("val")["example_id"]
            write_table(tmp / "answers.parquet", pd.DataFrame({"split": "val", "example_id": ids, "answer": answers}))
            if cfg.student.get("save_weights", False):
                state = parts["module"].lm.state_dict()
                write_weights(tmp / "model.safetensors", state)
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started,
                                             "rows": len(parts["data"].train_rows)})
        log.info("%s: trained and answered val in %.1f s", stage, time.perf_counter() - started)
        return store.find(stage, key)


def build_student(task: GenerationTask, targets: Artifact | None, cfg: DictConfig) -> dict:
    recipe = build(cfg.student.recipe, "student.recipe")
    return recipe(train_rows=training_rows(task, targets, cfg.student.get("min_prob", 0.0)), val_rows=val_rows(task),
                  lm_path=resolve_model(cfg.student.lm, cfg.paths.models_dir),
                  model=build(cfg.student.model, "student.model"), data=build(cfg.student.data, "student.data"),
                  seed=cfg.seeds.student, **OmegaConf.to_container(cfg.student.net, resolve=True))


def student_answers(parts: dict, task: GenerationTask, split: str, cfg: DictConfig, prompts=None) -> list[str]:
    from weaks2strong.models.causal_lm import generate_answers

    gen = cfg.student.generate
    lm = parts["module"].lm
    answers = generate_answers(lm, parts["tokenizer"], prompts or task.prompts(split), gen.max_new_tokens,
                               gen.batch_size, desc=f"student answers {split}")
    return [a[0] for a in answers]


def saved_weights(artifact: Artifact, stage: str) -> dict:
    """The weights a reused stage saved, to answer test with; one line on how to get them when it saved none."""
    from safetensors.torch import load_file

    weights = artifact.path / "model.safetensors"
    if not weights.is_file():
        raise UserInputError(f"{stage} {artifact.path} has no model.safetensors to answer the test split with "
                             f"(student.save_weights=false and the stage was reused); rerun with "
                             f"student.save_weights=true, or delete {artifact.path} to train it again")
    return load_file(weights)


def fitted_student(task: GenerationTask, targets, artifact: Artifact, cfg: DictConfig, stage: str) -> dict:
    parts = recall(stage, artifact.key)
    if parts is not None:
        return parts
    state = saved_weights(artifact, stage)
    parts = build_student(task, targets, cfg)
    parts["module"].lm.load_state_dict(state)
    return parts
