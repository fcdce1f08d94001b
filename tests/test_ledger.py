"""The results ledger (weaks2strong/evaluate/ledger.py) and the weak-to-strong table script's bookkeeping."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from weaks2strong.evaluate.ledger import Ledger, paired_interval, pgr

ROOT = Path(__file__).resolve().parents[1]


def _table_script():
    spec = importlib.util.spec_from_file_location("w2s_table", ROOT / "benchmarks" / "w2s_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["w2s_table"] = module
    spec.loader.exec_module(module)
    return module


def test_paired_interval_matches_a_hand_computation():
    a, b = [0.80, 0.82, 0.79, 0.85], [0.78, 0.80, 0.80, 0.81]
    d = np.array([0.02, 0.02, -0.01, 0.04])
    # t quantile for 3 degrees of freedom at 97.5%: 3.182446305284263 (tables)
    half = 3.182446305284263 * d.std(ddof=1) / 2.0
    mean, low, high, n = paired_interval(a, b)
    assert n == 4 and mean == pytest.approx(0.0175)
    assert low == pytest.approx(0.0175 - half) and high == pytest.approx(0.0175 + half)
    assert paired_interval([0.5], [0.4])[1:3] == (-math.inf, math.inf)  # one seed: no spread


def test_pgr():
    assert pgr(0.8, 0.6, 1.0) == pytest.approx(0.5)
    assert math.isnan(pgr(0.8, 0.9, 0.85))  # no gap to recover


def test_ledger_appends_skips_and_survives_a_torn_line(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append({"key": "a", "x": np.float64(0.5)})
    ledger.append({"key": "b", "x": 1})
    with open(ledger.path, "a") as fh:
        fh.write('{"key": "c", "x":')  # a run killed mid-write
    assert ledger.keys() == {"a", "b"}
    assert [r["x"] for r in ledger.records()] == [0.5, 1]
    with pytest.raises(ValueError, match="key"):
        ledger.append({"x": 2})


def test_a_cell_is_skipped_when_present_and_rerun_when_its_config_changes(monkeypatch):
    table = _table_script()
    aggs = ["majority", "bayes_label_model"]
    cells = table.plan_cells("youtube", 0, aggs, set())
    assert [(a, f) for a, _, f, _ in cells] == [("majority", "soft_weighted")] + [
        ("bayes_label_model", f) for f in table.FORMS]  # the reference also in its other target forms
    done = {key for *_, key in cells}
    assert table.plan_cells("youtube", 0, aggs, done) == []  # all present: nothing to run
    assert len(table.plan_cells("youtube", 1, aggs, done)) == len(cells)  # another seed is another cell
    monkeypatch.setitem(table.AGGREGATORS, "majority", ["aggregator=majority", "aggregator.weighting=confidence"])
    again = table.plan_cells("youtube", 0, aggs, done)
    assert [(a, f) for a, _, f, _ in again] == [("majority", "soft_weighted")]  # only the changed one reruns
    assert table.code_version(table.Ledger) != table.code_version(table.Ledger, np)  # code enters the key
    from omegaconf import OmegaConf

    fewer = OmegaConf.create({"rule_0": {"_target_": "weaks2strong.teachers.rules.WrenchRule", "index": 0}})
    assert len(table.plan_cells("youtube", 0, aggs, done | {k for *_, k in again}, teachers=fewer)) == len(cells)


def test_the_table_reads_the_ledger(tmp_path):
    """Three seeds of a fixture task: the printed Δ and interval are the paired ones, PGR from the means."""
    table = _table_script()
    records = []
    for seed, (ref, maj) in enumerate([(0.80, 0.78), (0.82, 0.80), (0.79, 0.80)]):
        common = {"task": "youtube", "seed": seed, "best_teacher": "rule_1", "best_teacher_test_acc": 0.6,
                  "ceiling_test_acc": 0.9, "targets_w2s_acc": 0.7, "student_val_acc": 0.8}
        records.append({**common, "key": f"r{seed}", "aggregator": "bayes_label_model", "form": "soft_weighted",
                        "student_test_acc": ref})
        records.append({**common, "key": f"m{seed}", "aggregator": "majority", "form": "soft_weighted",
                        "student_test_acc": maj, "targets_w2s_acc": 0.72})
    text, headline = table.render(records)
    mean, low, high, _ = paired_interval([0.80, 0.82, 0.79], [0.78, 0.80, 0.80])
    assert f"| majority | soft_weighted | 3 | 0.7200 | 0.7933 | {mean:+.4f} [{low:+.4f}, {high:+.4f}] |" in text
    assert f"| {pgr(np.mean([0.80, 0.82, 0.79]), 0.6, 0.9):+.3f} |" in text
    assert "best_student=bayes_label_model" in headline and "min_seeds=3" in headline
    assert "clears it by more than 2 SE" in text  # the ceiling's gap (0.3) has no spread at all here
    # majority is the only baseline here, so the best one; its interval includes 0
    assert f"| youtube | majority | 0.7933 | 0.8033 | {mean:+.4f} [{low:+.4f}, {high:+.4f}] | includes 0 |" in text
    assert "favours_vs_best_baseline=0 includes_0_vs_best_baseline=1 against_vs_best_baseline=0" in headline
    json.dumps(records)  # what the ledger stores is plain JSON


def test_the_fine_tuned_student_has_its_own_cells_with_a_ceiling_first():
    """The fine-tuned student's cells never collide with the probe's, start with its ceiling (``gold``),
    and change key with its config."""
    table = _table_script()
    probe = {key for *_, key in table.plan_cells("youtube", 0, ["majority"], set())}
    spec = ("minilm", {"student": {"lr": 5e-5}}, "v1")
    cells = table.plan_cells("youtube", 0, ["gold", "majority", "bayes_label_model"], set(), student=spec)
    assert [(a, f) for a, _, f, _ in cells] == [("gold", "soft_weighted"), ("majority", "soft_weighted"),
                                                ("bayes_label_model", "soft_weighted")]  # one form only
    assert not probe & {key for *_, key in cells}
    other = table.plan_cells("youtube", 0, ["gold"], set(), student=("minilm", {"student": {"lr": 1e-4}}, "v1"))
    assert other[0][3] != cells[0][3]


def test_the_fine_tuned_section_pairs_each_aggregator_with_the_reference():
    table = _table_script()
    records = []
    for seed, (ref, maj) in enumerate([(0.80, 0.78), (0.82, 0.80), (0.79, 0.80)]):
        common = {"task": "sst2", "seed": seed, "student": "minilm", "best_teacher_test_acc": 0.6,
                  "ceiling_test_acc": 0.9, "form": "soft_weighted"}
        records += [{**common, "key": f"g{seed}", "aggregator": "gold", "student_test_acc": 0.9,
                     "ceiling_clears_on_val": seed != 2},
                    {**common, "key": f"r{seed}", "aggregator": "bayes_label_model", "student_test_acc": ref},
                    {**common, "key": f"m{seed}", "aggregator": "majority", "student_test_acc": maj}]
    text, headline = table.render(records)
    mean, low, high, _ = paired_interval([0.80, 0.82, 0.79], [0.78, 0.80, 0.80])
    assert f"| sst2 | 3 | | | majority | 0.7933 | {mean:+.4f} [{low:+.4f}, {high:+.4f}] |" in text
    assert "| sst2 | 3 (2 clear on val) | 0.9000 | 0.6000 |" in text
    assert "minilm_ceilings=3 minilm_tasks_clear_on_val=1 minilm_reference_cells=3" in headline


def test_a_task_of_ones_own_joins_the_table(tmp_path, small_sst2, monkeypatch):
    """--add-task: a CSV the table has never seen, as Hydra overrides, gets cells of its own."""
    import pandas as pd

    table = _table_script()
    rows = pd.concat([small_sst2.split(s) for s in ("weak_train", "val", "w2s_train")], ignore_index=True)
    path = tmp_path / "heldout.csv"
    rows.rename(columns={"text": "sentence"})[["sentence", "label"]].to_csv(path, index=False)
    monkeypatch.setitem(table.TASKS, "heldout", {"overrides": ["task=csv", f"task.path={path}",
                                                               "task.text_column=sentence", "teachers=lexicons"],
                                                 "sizes": {"weak_train": 100, "val": 50, "w2s_train": 80, "test": 50}})
    cells = table.plan_cells("heldout", 0, ["majority"], set())
    assert [(a, f) for a, _, f, _ in cells] == [("majority", "soft_weighted")]
    base = table.compose("heldout", 0, [])
    assert base.task.path == str(path) and base.task.sizes.w2s_train == 80


def test_best_student_is_judged_on_the_references_seeds_only():
    """A row with a higher mean over fewer seeds (other splits) is not the best student."""
    table = _table_script()
    records = []
    for seed, ref in enumerate([0.80, 0.82, 0.79]):
        common = {"task": "youtube", "seed": seed, "best_teacher": "rule_1", "best_teacher_test_acc": 0.6,
                  "ceiling_test_acc": 0.9, "targets_w2s_acc": 0.7, "student_val_acc": 0.8, "form": "soft_weighted"}
        records.append({**common, "key": f"r{seed}", "aggregator": "bayes_label_model", "student_test_acc": ref})
        if seed < 2:  # two seeds only, each above the reference's mean
            records.append({**common, "key": f"m{seed}", "aggregator": "majority", "student_test_acc": 0.83})
    assert "best_student=bayes_label_model " in table.render(records)[1]
    records.append({**records[-1], "key": "m2", "seed": 2, "aggregator": "majority", "student_test_acc": 0.83})
    assert "best_student=majority " in table.render(records)[1]


def test_causal_rows_render_with_their_interval_and_both_pgrs():
    """The causal-LM section: per (targets, form) the paired interval to teacher forcing on the
    reference's targets, PGR against the best teacher and against the row's own aggregate."""
    table = _table_script()
    records = []
    for seed, (tf, dpo) in enumerate([(0.80, 0.84), (0.82, 0.83), (0.78, 0.83)]):
        common = {"task": "sst2", "seed": seed, "student": "gemma3", "best_teacher_test_acc": 0.6,
                  "ceiling_test_acc": 0.9, "student_val_acc": 0.8, "aggregate_test_acc": 0.7}
        records += [{**common, "key": f"g{seed}", "aggregator": "gold", "form": "tf", "student_test_acc": 0.9},
                    {**common, "key": f"t{seed}", "aggregator": "bayes_label_model", "form": "tf",
                     "student_test_acc": tf},
                    {**common, "key": f"d{seed}", "aggregator": "bayes_label_model", "form": "tf+dpo",
                     "student_test_acc": dpo}]
    text, headline = table.render(records)
    mean, low, high, _ = paired_interval([0.84, 0.83, 0.83], [0.80, 0.82, 0.78])
    row = next(line for line in text.splitlines() if "| sst2 | bayes_label_model | tf+dpo |" in line)
    assert f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]" in row
    assert f"| {(0.8333333 - 0.6) / 0.3:+.3f} | {(0.8333333 - 0.7) / 0.2:+.3f} |" in row
    assert "gemma3_pgr_tf=0.667 gemma3_pgr_tf_dpo=0.778" in headline
    assert "## youtube" not in text  # causal cells are not the frozen-feature table's


def test_a_causal_row_with_one_seed_says_it_has_no_interval():
    table = _table_script()
    common = {"task": "sst2", "seed": 0, "student": "gemma3", "best_teacher_test_acc": 0.6,
              "ceiling_test_acc": 0.9, "student_val_acc": 0.8, "aggregate_test_acc": 0.7}
    records = [{**common, "key": "t", "aggregator": "bayes_label_model", "form": "tf", "student_test_acc": 0.80},
               {**common, "key": "d", "aggregator": "bayes_label_model", "form": "tf+dpo", "student_test_acc": 0.84}]
    row = next(line for line in table.render(records)[0].splitlines()
               if "| sst2 | bayes_label_model | tf+dpo |" in line)
    assert "+0.0400 (1 seed, no interval)" in row and "inf" not in row


def test_dpo_gain_pairs_each_aggregators_tf_with_its_own_tf_dpo():
    """DPO's gain is tf+dpo − tf of the same aggregator and seed, with the share of rows that made a pair."""
    table = _table_script()
    records = []
    for seed, (tf, dpo, pairs) in enumerate([(0.60, 0.70, 200), (0.70, 0.75, 220), (0.65, 0.64, 240)]):
        common = {"task": "amazon_small", "seed": seed, "student": "gemma3", "best_teacher_test_acc": 0.6,
                  "ceiling_test_acc": 0.9, "student_val_acc": 0.8, "aggregate_test_acc": 0.7,
                  "aggregator": "majority", "n": {"w2s_train": 300}}
        records += [{**common, "key": f"t{seed}", "form": "tf", "student_test_acc": tf},
                    {**common, "key": f"d{seed}", "form": "tf+dpo", "student_test_acc": dpo, "align": pairs}]
    text, _ = table.render(records)
    mean, low, high, _ = paired_interval([0.70, 0.75, 0.64], [0.60, 0.70, 0.65])
    row = next(line for line in text.splitlines() if line.startswith("| amazon_small | majority | 3 |"))
    assert f"| {mean:+.4f} [{low:+.4f}, {high:+.4f}] | +0.0000 | 2 / 1 | {660 / 900:.2f} |" in row


def test_a_tie_of_means_counts_as_at_least_whatever_the_float_order():
    table = _table_script()
    assert 0.3 < 0.1 + 0.2 and table.at_least(0.3, 0.1 + 0.2)  # the same accuracy, summed in another order
    assert not table.at_least(0.79, 0.80)


def test_causal_targets_use_the_seeds_where_every_row_ran():
    """Issue 26's check: tf+dpo on the reference's targets against tf and the best baseline row, over the
    seeds where every row ran; a seed missing a row is left out of every mean."""
    table = _table_script()
    acc = {("bayes_label_model", "tf"): 0.80, ("bayes_label_model", "tf+dpo"): 0.82,
           ("bayes_label_model", "dpo"): 0.77, ("majority", "tf"): 0.81, ("majority", "tf+dpo"): 0.83,
           ("best_teacher", "tf"): 0.70, ("best_teacher", "tf+dpo"): 0.72}
    records = []
    for seed in range(3):
        common = {"task": "ag_news", "seed": seed, "student": "gemma3", "best_teacher_test_acc": 0.7,
                  "ceiling_test_acc": 0.9, "student_val_acc": 0.8, "aggregate_test_acc": 0.75}
        for (agg, form), a in acc.items():
            if seed == 2 and agg == "best_teacher":
                continue  # seed 2 has no best-teacher rows: its cells do not enter the check
            records.append({**common, "key": f"{agg}{form}{seed}", "aggregator": agg, "form": form,
                            "student_test_acc": a + (0.5 if seed == 2 else 0.0)})
    text, headline = table.render(records)
    row = next(line for line in text.splitlines() if line.startswith("| ag_news | 2 |"))
    assert "| 0.8000 | 0.8200 | ✓ | majority tf+dpo | 0.8300 | ✗ |" in row
    assert f"| {(0.82 - 0.7) / 0.2:+.3f} | -3.0 |" in row
    assert ("gemma3_target_tasks=1 gemma3_tf_dpo_ge_tf=1 gemma3_tf_dpo_ge_baselines=0 gemma3_mean_pgr_tf_dpo=0.600 "
            "gemma3_dpo_alone_gap_points_min=-3.0") in headline


def test_a_source_edited_after_the_run_started_is_refused(tmp_path, monkeypatch):
    """A cell is keyed by the hash of its code's files; a file edited while the ledger runs would key the
    cell by code the process never ran."""
    table = _table_script()
    source = tmp_path / "label_model_under_edit.py"
    source.write_text("class Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import label_model_under_edit

    monkeypatch.setattr(table, "STARTED", source.stat().st_mtime + 1)  # the file predates the run
    first = table.code_version(label_model_under_edit.Model)
    monkeypatch.setattr(table, "STARTED", source.stat().st_mtime - 1)  # edited after the run started
    with pytest.raises(SystemExit, match="label_model_under_edit.py changed after this run started"):
        table.code_version(label_model_under_edit.Model)
    assert len(first) == 12


def _choice_script():
    _table_script()  # dpo_choice imports it by name
    spec = importlib.util.spec_from_file_location("dpo_choice", ROOT / "benchmarks" / "dpo_choice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point(task, seed, beta, epochs, val, tf=0.80, correct=None, tf_correct=None):
    return {"key": f"{task}{seed}{beta}{epochs}", "task": task, "seed": seed, "aggregator": "bayes_label_model",
            "beta": beta, "epochs": epochs, "val_accuracy": val, "tf_val_accuracy": tf, "code_version": "v",
            **({"val_correct": correct, "tf_val_correct": tf_correct} if correct else {})}


def test_dpo_choice_takes_the_best_mean_val_point_over_seeds_where_every_point_ran():
    choice = _choice_script()
    records = [_point("sst2", 0, 1.0, 1, 0.80), _point("sst2", 0, 2.0, 1, 0.84), _point("sst2", 0, 1.0, 2, 0.70),
               _point("sst2", 1, 1.0, 1, 0.82), _point("sst2", 1, 2.0, 1, 0.81), _point("sst2", 1, 1.0, 2, 0.90),
               _point("sst2", 2, 1.0, 1, 0.99)]  # seed 2 ran one point only: it decides nothing
    chosen = choice.choose(records)["sst2"]
    assert chosen["seeds"] == 2
    assert chosen["points"][(1.0, 1)] == (pytest.approx(0.81), 2)
    assert chosen["point"] == (2.0, 1) and chosen["mean"] == pytest.approx(0.825)  # 0.825 > 0.81 > 0.80
    text, headline = choice.render(records)
    assert "| sst2 | 2 | 0.8000 | 0.8100 | – | 0.8250* | 0.8000 | – |" in text  # no per-row records: no counts
    assert headline == "dpo_choice_tasks=1 dpo_choice_not_default=1 dpo_choice_val_gain_points_max=1.5"


def test_dpo_choice_counts_discordant_val_rows_and_keeps_the_last_record_of_a_point():
    choice = _choice_script()
    tf = "0011"
    records = [_point("sst2", 0, 1.0, 1, 0.25, correct="0001", tf=0.5, tf_correct=tf),  # replaced below
               _point("sst2", 0, 1.0, 1, 0.50, correct="0101", tf=0.5, tf_correct=tf),
               _point("sst2", 0, 0.5, 1, 0.75, correct="1110", tf=0.5, tf_correct=tf)]
    chosen = choice.choose(records)["sst2"]
    # β=0.5 against the default (0101): rows 0 and 2 won, row 3 lost: +1/4 with an SE of √(3 − 1/4)/4 = 0.41,
    # so the default stands; the default against tf (0011): row 1 won, row 2 lost
    assert chosen["points"][(1.0, 1)][0] == pytest.approx(0.50) and chosen["point"] == (1.0, 1)
    text, _ = choice.render(records)
    assert "| sst2 | 1 | 0.5000 | 0.5000* | 0.7500 (+2 −1) | – | – | +1 −1 |" in text


def test_dpo_choice_leaves_the_default_only_by_more_than_one_standard_error():
    choice = _choice_script()
    default = "0" * 10 + "1" * 10
    clear = "1" * 19 + "0"  # 9 rows won, 1 lost of 20: +0.40, SE √(10 − 64/20)/20 = 0.13
    slight = "11" + "0" * 9 + "1" * 9  # 2 won, 1 lost: +0.05, SE √(3 − 1/20)/20 = 0.086
    for point, expected in ((clear, (2.0, 1)), (slight, (1.0, 1))):
        records = [_point("trec", 0, 1.0, 1, 0.5, correct=default, tf_correct=default),
                   _point("trec", 0, 2.0, 1, point.count("1") / 20, correct=point, tf_correct=default)]
        assert choice.choose(records)["trec"]["point"] == expected


def test_dpo_choice_keeps_the_default_on_a_tie():
    choice = _choice_script()
    records = [_point("ag_news", 0, 1.0, 1, 0.85), _point("ag_news", 0, 0.5, 1, 0.85),
               _point("ag_news", 0, 1.0, 2, 0.85)]
    assert choice.choose(records)["ag_news"]["point"] == (1.0, 1)
    assert choice.render(records)[1].startswith("dpo_choice_tasks=1 dpo_choice_not_default=0")


def test_the_causal_ledgers_dpo_settings_are_the_ones_val_chose():
    table, choice = _table_script(), _choice_script()
    version = choice.current_version()
    records = [r for r in Ledger(choice.CHOICES).records()
               if r["aggregator"] == table.REFERENCE and r["code_version"] == version]
    chosen = choice.choose(records)
    if not chosen:
        pytest.skip("no choice-ledger point at today's align code: rerun benchmarks/dpo_choice.py")
    for task, c in chosen.items():
        beta, epochs = c["point"]
        assert table.CAUSAL_ALIGN[task] == {"beta": beta, "epochs": epochs}, task
    cfg = table.compose_causal("amazon_small", 0, [])  # the setting reaches the cells' config, and so their keys
    assert (cfg.align.model.beta, cfg.align.epochs) == (table.CAUSAL_ALIGN["amazon_small"]["beta"],
                                                        table.CAUSAL_ALIGN["amazon_small"]["epochs"])
