"""scripts/resolvable_size.py: the paired two-SE rule, and the ladder end to end on each path it serves
(real SciQ questions and HH-RLHF pairs, tiny causal LMs)."""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from test_generation import TINY_SCIQ_GEN
from test_hh import SIZES as HH_SIZES

from weaks2strong.pipeline.common import stage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ladder():
    spec = importlib.util.spec_from_file_location("resolvable_size", ROOT / "scripts" / "resolvable_size.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rule_is_the_paired_mean_against_two_standard_errors(ladder):
    ceiling = np.array([1, 1, 1, 0, 1, 1, 0, 1], dtype=float)
    weak = np.array([0, 1, 0, 0, 1, 0, 0, 1], dtype=float)
    # d = 1 0 1 0 0 1 0 0: mean 3/8, sd sqrt(15/56), SE 0.183: 0.375 > 0.366, just
    mean, se, ok = ladder.resolves(ceiling, weak)
    assert mean == pytest.approx(0.375) and se == pytest.approx(np.sqrt(15 / 56) / np.sqrt(8)) and ok
    # one right answer fewer: d = 1 0 0 0 0 1 0 0, mean 1/4, SE sqrt(3/14)/sqrt(8) = 0.164: 0.25 < 0.327
    mean, se, ok = ladder.resolves(np.array([1, 1, 0, 0, 1, 1, 0, 1.0]), weak)
    assert mean == pytest.approx(0.25) and se == pytest.approx(np.sqrt(3 / 14) / np.sqrt(8)) and not ok
    mean, se, ok = ladder.resolves(np.ones(30), np.r_[np.zeros(20), np.ones(10)])
    assert mean == pytest.approx(2 / 3) and ok
    _, _, ok = ladder.resolves(weak, ceiling)  # the weak side ahead never resolves
    assert not ok


def test_a_ladder_stopped_mid_way_keeps_its_finished_rungs_and_says_so(ladder):
    rung = (240, 200, 0.6, "judge lexical", 0.55, 0.05, 0.04, False, 900.0)
    partial = ladder.ladder_table("hh_harmless", ["--sizes", "240", "480"], [rung], finished=False)
    assert "| 240 | 200 | 0.600 | judge lexical | 0.550 | +0.050 | 0.040 | no | 900 |" in partial
    assert "had not reached its remaining sizes" in partial
    assert "remaining sizes" not in ladder.ladder_table("hh_harmless", ["--sizes", "240"], [rung], finished=True)


def test_every_weak_source_gets_its_paired_difference_per_rung(ladder):
    rung = (240, 200, 0.6, "judge lexical", 0.55, 0.05, 0.04, False, 900.0)
    sources = [(240, {"judge lexical": (0.55, 0.05, 0.04, False), "judge prompted": (0.4, 0.2, 0.05, True)})]
    text = ladder.ladder_table("hh_harmless", ["--sizes", "240"], [rung], finished=True, sources=sources)
    assert "| w2s_train | judge lexical | judge prompted |" in text
    assert "| 240 | 0.550 (+0.050 ± 0.040) | 0.400 (+0.200 ± 0.050) ✓ |" in text
    assert "Every weak source" not in ladder.ladder_table("hh_harmless", ["--sizes", "240"], [rung], finished=True)


def test_a_size_the_pool_cannot_hold_is_refused_in_one_line(ladder, capsys, mirror):
    with pytest.raises(SystemExit) as stop:
        ladder.main(["--sizes", "5000", "experiment=hh_harmless"])  # 2,303 pairs in all; overrides after the sizes
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 2 and "--sizes 5000" in err and "task.sizes.w2s_train=5000" in err


def _headline(out: str) -> dict:
    last = out.strip().splitlines()[-1]
    return dict(re.findall(r"(\w+)=(\S+)", last))


@pytest.mark.integration
def test_the_ladder_on_sciq_gen_writes_a_row_per_rung_until_one_resolves(ladder, tmp_path, mirror, models_dir,
                                                                         capsys):
    out = tmp_path / "sizes.md"
    ladder.main(["--sizes", "8", "4", "--out", str(out), "experiment=sciq_gen", "debug=fast",
                 f"paths.output_dir={tmp_path}/run", f"paths.runs_dir={tmp_path}/runs",
                 f"paths.models_dir={models_dir}",
                 "task.sizes.weak_train=40", "task.sizes.val=12", "task.sizes.test=12", *TINY_SCIQ_GEN])
    figures = _headline(capsys.readouterr().out)
    assert figures["task"] == "sciq_gen" and int(figures["largest_tried"]) in (4, 8)
    best, per_source = out.read_text().split("## Every weak source")
    table = [line for line in best.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(line.split("|")[1]) for line in table] == [4, 8][:len(table)]  # smallest first
    assert all(line.split("|")[2].strip() == "12" for line in table)  # every rung on its 12 val rows
    resolved = [line.split("|")[8].strip() for line in table]
    assert resolved.count("yes") <= 1 and (resolved[-1] == "yes") == (figures["resolvable_size"] != "none")
    assert 0 <= float(figures["ceiling_val"]) <= 1 and 0 <= float(figures["best_weak_val"]) <= 1
    header = [line for line in per_source.splitlines() if line.startswith("| w2s_train")][0]
    assert header.count("teacher ") == 3  # sciq_weak less smollm2_ft_b (TINY_SCIQ_GEN drops it): a column each
    assert len([line for line in per_source.splitlines() if line.startswith("| ") and line[2].isdigit()]) == len(table)
    assert not stage._FITTED  # no rung's models outlive it


@pytest.mark.integration
def test_the_ladder_on_hh_harmless_scores_the_gold_dpo_student_against_the_judges(ladder, tmp_path, mirror,
                                                                                  models_dir, capsys):
    out = tmp_path / "sizes.md"
    ladder.main(["--sizes", "8", "--out", str(out), "experiment=hh_harmless", "trainer.accelerator=cpu",
                 f"paths.output_dir={tmp_path}/run", f"paths.runs_dir={tmp_path}/runs",
                 f"paths.models_dir={models_dir}",
                 "seed=3", *(f"task.sizes.{k}={v}" for k, v in HH_SIZES.items() if k != "w2s_train"),
                 "teachers.smollm2_dpo.model=tiny-llama", "teachers.smollm2_dpo.epochs=1",
                 "teachers.smollm2_dpo.max_prompt_tokens=32", "teachers.smollm2_dpo.max_answer_tokens=16",
                 "teachers.smollm2_prompted.model=tiny-llama", "aggregator.model.progress=false",
                 "student.lm=tiny-llama", "align.epochs=1", "align.max_prompt_tokens=32",
                 "align.max_answer_tokens=16", "align.ceiling.model.optimizer.lr=1e-2"])
    figures = _headline(capsys.readouterr().out)
    assert figures["task"] == "hh_harmless" and figures["largest_tried"] == "8"
    row = [line for line in out.read_text().splitlines() if line.startswith("| 8 |")][0].split("|")
    assert row[2].strip() == str(HH_SIZES["val"]) and row[4].strip().startswith("judge ")
    for value in (float(row[3]), float(row[5])):  # whole or half votes over 12 pairs (printed to 3 decimals)
        halves = value * 2 * HH_SIZES["val"]
        assert 0 <= value <= 1 and abs(halves - round(halves)) < 0.02
    assert float(row[6]) == pytest.approx(float(row[3]) - float(row[5]), abs=1e-3)
