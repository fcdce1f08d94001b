"""The generation run (``w2s experiment=sciq_gen``) and its evaluate stage.

evaluate unseals test and answers it with every row of the table: each teacher (greedy), each
aggregation's top candidate (over the teachers' test candidates, the aggregator's globals as fitted
on w2s_train + val), the untrained student k-shot, the ceiling and the student. Every answer set is
cached (``gen_answers``), so a rerun reads them. PGR is on exact match, against the best teacher
(chosen on val) and against the aggregate.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.evaluate.metrics import pgr
from weaks2strong.pipeline import align
from weaks2strong.pipeline import generation as gen
from weaks2strong.pipeline.compute import exclusive, recall
from weaks2strong.pipeline.config import build, make_loggers
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_text
from weaks2strong.tasks.generation import GenerationTask

log = logging.getLogger("weaks2strong.pipeline")


def run_generation(cfg: DictConfig, task: GenerationTask, store: Store, run_dir: Path) -> dict:
    dev = task.without_test()
    g = cfg.generation
    proposals = gen.propose(dev, cfg.teachers, store)
    pools = {s: gen.candidate_pool(dev, proposals, s, g.max_candidates) for s in gen.DEV}
    scores = gen.score(dev, cfg.teachers, pools, store)
    targets = gen.aggregate(dev, proposals, scores, pools, cfg, store)
    ceiling = gen.distill(dev, None, cfg, store, run_dir, stage="gen_ceiling")
    student = gen.distill(dev, targets, cfg, store, run_dir, stage="gen_student")
    aligned = run_align(dev, cfg, store, run_dir, pools, targets, student)
    return evaluate(task, dev, cfg, store, run_dir, proposals, scores, pools, targets, ceiling, student, aligned)


def run_align(dev: GenerationTask, cfg: DictConfig, store: Store, run_dir: Path, pools, targets: Artifact,
              student: Artifact) -> dict[str, Artifact]:
    """``align=dpo``: the student DPO'd on the posterior's pairs and, as the alignment ceiling, on gold pairs."""
    a = cfg.align
    if a.method == "none":
        return {}
    val_pairs = align.gold_pairs(dev, pools, "val", a.max_pairs)
    posterior = align.posterior_pairs(dev, targets, a.max_pairs, a.min_pair_mass, hard=a.pairs == "hard")
    gold = align.gold_pairs(dev, pools, "w2s_train", a.max_pairs)
    return {label: align.align(dev, student, targets, pairs, val_pairs, source, cfg, store, run_dir, stage)
            for label, pairs, source, stage in (
                ("student + DPO", posterior, f"{targets.key}:{a.pairs}", "gen_align"),
                ("student + DPO (gold pairs)", gold, "gold", "gen_align_gold"))}


def cached_answers(store: Store, key: str, name: str, split: str, answer) -> list[str]:
    """The answers of ``name`` on ``split``, computed once per key."""
    with exclusive(store, "gen_answers", key) as found:
        if found is None:
            answers = answer()
            with store.create("gen_answers", key, {}, {"name": name, "split": split}) as tmp:
                write_table(tmp / "answers.parquet", pd.DataFrame({"answer": answers}))
            found = store.find("gen_answers", key)
    return found.table("answers")["answer"].tolist()


def aggregate_test(task: GenerationTask, dev: GenerationTask, cfg: DictConfig, store: Store, proposals, scores, pools,
                   targets: Artifact, test_proposals, test_scores, test_pool) -> np.ndarray:
    """The aggregation's posterior on test: the fitted globals applied to the teachers' test scores."""
    method, summary = cfg.aggregator.method, targets.record("summary")
    probs, logprobs, counts = gen.score_arrays(task, test_scores, test_pool, "test")
    greedy = gen.greedy_index(task, test_proposals, test_pool, "test")
    has = counts > 0
    posterior = np.zeros((len(counts), probs.shape[-1] + 1))
    posterior[~has, -1] = 1.0
    model = recall("gen_aggregate", targets.key)
    if method == "bayes" and model is None:  # aggregate was reused: fit the same model again (deterministic)
        anchor = cfg.aggregator.get("anchor", "val") == "val"
        dev_probs, _, dev_counts, gold = gen.dev_arrays(dev, scores, pools, anchor)
        keep = dev_counts > 0
        model = build(cfg.aggregator.model, "aggregator.model").fit(dev_probs[keep], dev_counts[keep], gold=gold[keep])
    if method == "bayes":
        posterior[has] = model.predict_proba(probs[has], counts[has])
    else:
        names = list(scores)
        posterior[has] = gen.aggregate_posterior(method, None, probs[has], logprobs[has], counts[has], None,
                                                 names.index(summary["best_teacher"]), greedy[has])[0]
    return posterior


def kshot_answers(task: GenerationTask, cfg: DictConfig, store: Store, split: str) -> list[str]:
    """The untrained student's greedy answers with ``generation.student_shots`` demonstrations from
    weak_train (cached per model, shots and split)."""
    from weaks2strong.models.causal_lm import generate_answers, load_causal_lm
    from weaks2strong.teachers.generating import demonstrations
    from weaks2strong.zoo import resolve_model

    lm_path = resolve_model(cfg.student.lm, cfg.paths.models_dir)
    weak = task.split("weak_train")
    rng = np.random.default_rng(cfg.seeds.student)
    shots = [(weak["question"].iloc[i], weak["answer"].iloc[i])
             for i in rng.choice(len(weak), size=cfg.generation.student_shots, replace=False)]

    def answer():
        tok, lm = load_causal_lm(lm_path)
        return [a[0] for a in generate_answers(lm, tok, task.prompts(split), cfg.student.generate.max_new_tokens,
                                               cfg.student.generate.batch_size, prefix=demonstrations(task, shots),
                                               desc=f"untrained student {split}")]

    key = stable_hash(gen.gen_task_key(task), lm_path, shots, split, "kshot")
    return cached_answers(store, key, "kshot", split, answer)


def evaluate(task, dev, cfg, store, run_dir, proposals, scores, pools, targets, ceiling, student,
             aligned: dict[str, Artifact] | None = None) -> dict:
    g = cfg.generation
    test_proposals = gen.propose(task, cfg.teachers, store, splits=("test",))
    test_pool = gen.candidate_pool(task, test_proposals, "test", g.max_candidates)
    test_scores = gen.score(task, cfg.teachers, {"test": test_pool}, store)
    answers = {s: task.answers(s) for s in ("val", "test")}
    rows: dict[str, dict] = {}
    for name in proposals:
        rows[f"teacher {name}"] = {s: gen.em_of(gen.teacher_answers(task, p, s), answers[s])
                                   for s, p in (("val", proposals[name]), ("test", test_proposals[name]))}
    summary = targets.record("summary")
    best = summary["best_teacher"]
    # the aggregate: its top candidate on val (from the targets) and test
    table = targets.table("targets")
    post_val = {eid: grp.sort_values("q", ascending=False)["text"].iloc[0]
                for eid, grp in table[table["split"] == "val"].groupby("example_id")}
    post_train = {eid: grp.sort_values("q", ascending=False)["text"].iloc[0]
                  for eid, grp in table[table["split"] == "w2s_train"].groupby("example_id")}
    test_posterior = aggregate_test(task, dev, cfg, store, proposals, scores, pools, targets, test_proposals,
                                    test_scores, test_pool)
    rows["aggregate"] = {
        "w2s_train": gen.em_of([post_train.get(e, "") for e in task.split("w2s_train")["example_id"]],
                               task.answers("w2s_train")),
        "val": gen.em_of([post_val.get(e, "") for e in task.split("val")["example_id"]], answers["val"]),
        "test": gen.em_of(gen.top_answers(test_pool, test_posterior), answers["test"])}
    in_pool = {s: float(np.mean(gen.gold_index(p, answers[s]) < [len(c) for c in p]))
               for s, p in (("val", pools["val"]), ("test", test_pool))}
    # the untrained strong model, k-shot: the baseline teacher forcing must not fall below
    rows["student k-shot (untrained)"] = {s: gen.em_of(kshot_answers(task, cfg, store, s), answers[s])
                                          for s in ("val", "test")}
    for label, artifact, stage, source in (("ceiling", ceiling, "gen_ceiling", None),
                                           ("student", student, "gen_student", targets)):
        val = artifact.table("answers")["answer"].tolist()

        def test_answers(artifact=artifact, stage=stage, source=source):
            parts = gen.fitted_student(dev, source, artifact, cfg, stage)
            return gen.student_answers(parts, task, "test", cfg)

        test = cached_answers(store, stable_hash(artifact.key, gen.gen_task_key(task), "test"), label, "test",
                              test_answers)
        rows[label] = {"val": gen.em_of(val, answers["val"]), "test": gen.em_of(test, answers["test"])}
    for label, artifact in (aligned or {}).items():  # after DPO (align=dpo)
        stage = artifact.stage

        def test_answers(artifact=artifact, stage=stage):
            parts = align.aligned_student(dev, student, targets, artifact, cfg, stage)
            return gen.student_answers(parts, task, "test", cfg)

        test = cached_answers(store, stable_hash(artifact.key, gen.gen_task_key(task), "test"), label, "test",
                              test_answers)
        rows[label] = {"val": gen.em_of(artifact.table("answers")["answer"].tolist(), answers["val"]),
                       "test": gen.em_of(test, answers["test"])}
    metrics = {"task": {"name": task.name, "sizes": task.sizes(), "source": task.source}, "kind": "generation",
               "aggregator": cfg.aggregator.method, "best_teacher": best, "rows": rows,
               "gold_in_candidates": in_pool, "excluded": summary["excluded"], "teachers": summary["teachers"]}
    metrics["pgr"] = {s: {"vs_best_teacher": pgr(rows["student"][s]["em"], rows[f"teacher {best}"][s]["em"],
                                                 rows["ceiling"][s]["em"]),
                          "vs_aggregate": pgr(rows["student"][s]["em"], rows["aggregate"][s]["em"],
                                              rows["ceiling"][s]["em"])} for s in ("val", "test")}
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "report.md", render_markdown(metrics))
    print(render_markdown(metrics))
    for logger in make_loggers(cfg.get("logger"), "eval"):
        logger.log_metrics({f"{s}/{n}/{m}": v[s][m] for n, v in rows.items() for s in v for m in v[s]})
        logger.finalize("success")
    write_json(run_dir / "artifacts.json", {"propose": {n: str(a.path) for n, a in proposals.items()},
                                            "score": {n: str(a.path) for n, a in scores.items()},
                                            "aggregate": str(targets.path), "ceiling": str(ceiling.path),
                                            "student": str(student.path),
                                            "align": {label: str(a.path) for label, a in (aligned or {}).items()}})
    return metrics


def render_markdown(metrics: dict) -> str:
    """The generation report: EM and F1 per row (val, test; the aggregate also on w2s_train), and PGR on EM."""
    def cell(score: dict, split: str) -> str:
        s = score.get(split)
        return f"{s['em']:.3f} / {s['f1']:.3f}" if s else "-"

    lines = [f"# weaks2strong · {metrics['task']['name']} (generation)", "",
             f"Aggregator: {metrics['aggregator']}; best teacher (on val): {metrics['best_teacher']}. "
             f"Gold among the candidates: val {metrics['gold_in_candidates']['val']:.3f}, test "
             f"{metrics['gold_in_candidates']['test']:.3f}. Examples with no candidate (excluded from training): "
             f"{metrics['excluded']}.", "",
             "| row | w2s_train EM / F1 | val EM / F1 | test EM / F1 |", "|---|---|---|---|"]
    for name, score in metrics["rows"].items():
        lines.append(f"| {name} | {cell(score, 'w2s_train')} | {cell(score, 'val')} | {cell(score, 'test')} |")
    p = metrics["pgr"]

    def show(v):
        return "n/a (the ceiling does not beat it)" if v != v else f"{v:.3f}"

    lines += ["", f"PGR on EM vs best teacher: val {show(p['val']['vs_best_teacher'])}, test "
                  f"{show(p['test']['vs_best_teacher'])}; vs aggregate: val {show(p['val']['vs_aggregate'])}, "
                  f"test {show(p['test']['vs_aggregate'])}", ""]
    if metrics["teachers"]:
        lines += ["| teacher | estimated accuracy | reliability per confidence bin |", "|---|---|---|"]
        for name, t in metrics["teachers"].items():
            lines.append(f"| {name} | {t['accuracy']:.3f} | {', '.join(f'{r:.2f}' for r in t['reliability'])} |")
    return "\n".join(lines) + "\n"
