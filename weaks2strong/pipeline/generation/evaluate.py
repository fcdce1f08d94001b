"""The generation path's evaluate stage.

evaluate unseals test and answers it with every row of the table: each teacher (greedy), each
aggregation's top candidate (over the teachers' test candidates, the aggregator's globals as fitted
on w2s_train + val), the untrained student k-shot, the ceiling and the student. Every answer set is
cached (``gen_answers``), so a rerun reads them. PGR is on exact match, against the best teacher
(chosen on val) and against the aggregate.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from weaks2strong.evaluate.metrics import pgr
from weaks2strong.pipeline.common.config import make_loggers
from weaks2strong.pipeline.common.stage import cached_stage
from weaks2strong.pipeline.generation import teach
from weaks2strong.pipeline.generation.aggregate import aggregate_test, em_of, gold_index, teacher_answers, top_answers
from weaks2strong.pipeline.generation.align import aligned_student
from weaks2strong.pipeline.generation.distill import fitted_student, student_answers
from weaks2strong.pipeline.generation.teach import gen_task_key
from weaks2strong.runtime.artifacts import Artifact, Store, stable_hash, write_json, write_table, write_text
from weaks2strong.tasks.generation import GenerationTask

log = logging.getLogger("weaks2strong.pipeline")


def cached_answers(store: Store, key: str, name: str, split: str, answer) -> list[str]:
    """The answers of ``name`` on ``split``, computed once per key."""
    def compute():
        answers = answer()
        with store.create("gen_answers", key, {}, {"name": name, "split": split}) as tmp:
            write_table(tmp / "answers.parquet", pd.DataFrame({"answer": answers}))

    return cached_stage(store, "gen_answers", key, compute).table("answers")["answer"].tolist()


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

    key = stable_hash(gen_task_key(task), lm_path, shots, split, "kshot")
    return cached_answers(store, key, "kshot", split, answer)


def evaluate(task, dev, cfg, store, run_dir, proposals, scores, pools, targets, ceiling, student,
             aligned: dict[str, Artifact] | None = None) -> dict:
    g = cfg.generation
    test_proposals = teach.propose(task, cfg.teachers, store, splits=("test",))
    test_pool = teach.candidate_pool(task, test_proposals, "test", g.max_candidates)
    test_scores = teach.score(task, cfg.teachers, {"test": test_pool}, store)
    answers = {s: task.answers(s) for s in ("val", "test")}
    rows: dict[str, dict] = {}
    for name in proposals:
        rows[f"teacher {name}"] = {s: em_of(teacher_answers(task, p, s), answers[s])
                                   for s, p in (("val", proposals[name]), ("test", test_proposals[name]))}
    summary = targets.record("summary")
    best = summary["best_teacher"]
    # the aggregate: its top candidate on val (from the targets) and test
    table = targets.table("targets")
    post_val = {eid: grp.sort_values("q", ascending=False)["text"].iloc[0]
                for eid, grp in table[table["split"] == "val"].groupby("example_id")}
    post_train = {eid: grp.sort_values("q", ascending=False)["text"].iloc[0]
                  for eid, grp in table[table["split"] == "w2s_train"].groupby("example_id")}
    test_posterior = aggregate_test(task, dev, cfg, scores, pools, targets, test_proposals, test_scores, test_pool)
    rows["aggregate"] = {
        "w2s_train": em_of([post_train.get(e, "") for e in task.split("w2s_train")["example_id"]],
                           task.answers("w2s_train")),
        "val": em_of([post_val.get(e, "") for e in task.split("val")["example_id"]], answers["val"]),
        "test": em_of(top_answers(test_pool, test_posterior), answers["test"])}
    in_pool = {s: float(np.mean(gold_index(p, answers[s]) < [len(c) for c in p]))
               for s, p in (("val", pools["val"]), ("test", test_pool))}
    # the untrained strong model, k-shot: the baseline teacher forcing must not fall below
    rows["student k-shot (untrained)"] = {s: em_of(kshot_answers(task, cfg, store, s), answers[s])
                                          for s in ("val", "test")}
    for label, artifact, stage, source in (("ceiling", ceiling, "gen_ceiling", None),
                                           ("student", student, "gen_student", targets)):
        val = artifact.table("answers")["answer"].tolist()

        def test_answers(artifact=artifact, stage=stage, source=source):
            parts = fitted_student(dev, source, artifact, cfg, stage)
            return student_answers(parts, task, "test", cfg)

        test = cached_answers(store, stable_hash(artifact.key, gen_task_key(task), "test"), label, "test",
                              test_answers)
        rows[label] = {"val": em_of(val, answers["val"]), "test": em_of(test, answers["test"])}
    for label, artifact in (aligned or {}).items():  # after DPO (align=dpo)
        stage = artifact.stage

        def test_answers(artifact=artifact, stage=stage):
            parts = aligned_student(dev, student, targets, artifact, cfg, stage)
            return student_answers(parts, task, "test", cfg)

        test = cached_answers(store, stable_hash(artifact.key, gen_task_key(task), "test"), label, "test",
                              test_answers)
        rows[label] = {"val": em_of(artifact.table("answers")["answer"].tolist(), answers["val"]),
                       "test": em_of(test, answers["test"])}
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
