"""Two questions the evaluate stage answers about the teachers: do their errors correlate (on val), and
do the aggregator's accuracy intervals cover their true accuracy (on w2s_train)."""
import math

import numpy as np
import pytest

from weaks2strong.evaluate import error_correlation, estimates_summary, teacher_analysis
from weaks2strong.evaluate.report import render_markdown

RIGHT, WRONG, TIE, SKIP = "right", "wrong", "tie", "skip"


def _teacher(answers, gold):
    """(N, 2) probabilities: 0.8 on gold (right) or on the other class (wrong), 0.5/0.5, or NaN (abstained)."""
    rows = {RIGHT: lambda y: np.eye(2)[y] * 0.6 + 0.2, WRONG: lambda y: np.eye(2)[1 - y] * 0.6 + 0.2,
            TIE: lambda y: np.full(2, 0.5), SKIP: lambda y: np.full(2, np.nan)}
    return np.stack([rows[a](y) for a, y in zip(answers, gold)])


def _stack(gold, *teachers):
    return np.stack([_teacher(t, gold) for t in teachers], axis=1)  # (N, T, 2)


def test_error_correlation_matches_hand_values():
    gold = np.array([0, 1, 0, 1, 0])
    a = [WRONG, WRONG, WRONG, RIGHT, RIGHT]  # errors 1 1 1 0 0
    b = [WRONG, WRONG, RIGHT, RIGHT, RIGHT]  # errors 1 1 0 0 0
    flipped = [RIGHT, RIGHT, RIGHT, WRONG, WRONG]  # 1 - a
    corr, shared = error_correlation(_stack(gold, a, b, a, flipped), gold)
    # a, b: means .6, .4, E[ab] = .4: cov = .4 - .24 = .16, both variances .24, r = 2/3
    assert corr[0, 1] == pytest.approx(2 / 3) and corr[1, 0] == pytest.approx(2 / 3)
    assert corr[0, 2] == pytest.approx(1.0)  # two identical teachers
    assert corr[0, 3] == pytest.approx(-1.0)  # one errs exactly where the other is right
    assert np.array_equal(np.diag(corr), np.ones(4)) and (shared == 5).all()


def test_independent_error_patterns_correlate_zero():
    gold = np.array([1, 1, 0, 0])
    a = [WRONG, WRONG, RIGHT, RIGHT]  # errors 1 1 0 0
    b = [WRONG, RIGHT, WRONG, RIGHT]  # errors 1 0 1 0: E[ab] = 1/4 = E[a] E[b]
    corr, _ = error_correlation(_stack(gold, a, b), gold)
    assert corr[0, 1] == pytest.approx(0.0, abs=1e-12)


def test_each_pair_uses_the_rows_both_answered():
    gold = np.array([0, 1, 0, 1, 0, 1])
    a = [WRONG, WRONG, RIGHT, RIGHT, WRONG, RIGHT]  # errors 1 1 0 0 1 0
    c = [WRONG, WRONG, RIGHT, RIGHT, SKIP, SKIP]  # on rows 0-3 the same errors as a
    never_wrong = [RIGHT, RIGHT, RIGHT, SKIP, RIGHT, RIGHT]
    lonely = [SKIP, SKIP, SKIP, SKIP, SKIP, WRONG]
    corr, shared = error_correlation(_stack(gold, a, c, never_wrong, lonely), gold)
    assert corr[0, 1] == pytest.approx(1.0)  # on all six rows a and c would disagree on row 4
    assert shared.tolist() == [[6, 4, 5, 1], [4, 4, 3, 0], [5, 3, 5, 1], [1, 0, 1, 1]]
    assert np.isnan(corr[0, 2]) and np.isnan(corr[2, 2])  # a constant error has no correlation, not even with itself
    assert np.isnan(corr[0, 3]) and np.isnan(corr[3, 3])  # fewer than 2 shared rows
    assert np.array_equal(np.isnan(corr), np.isnan(corr.T))


def test_a_tie_is_half_an_error_as_in_accuracy():
    gold = np.array([0, 0, 0])
    x = [TIE, RIGHT, WRONG]  # errors .5 0 1
    y = [WRONG, RIGHT, WRONG]  # errors 1 0 1
    corr, _ = error_correlation(_stack(gold, x, y), gold)
    # cov = E[xy] - E[x]E[y] = 1/2 - 1/3 = 1/6; var x = 5/12 - 1/4 = 1/6; var y = 2/3 - 4/9 = 2/9
    assert corr[0, 1] == pytest.approx((1 / 6) / math.sqrt(1 / 6 * 2 / 9))  # = √3/2


def test_error_correlation_agrees_with_numpy_pairwise():
    rng = np.random.default_rng(0)
    n, t, k = 200, 4, 3
    probs = rng.dirichlet(np.ones(k), size=(n, t))  # (N, T, K)
    probs[rng.random((n, t)) < 0.3] = np.nan
    gold = rng.integers(0, k, n)
    corr, shared = error_correlation(probs, gold)
    for i in range(t):
        for j in range(t):
            both = ~np.isnan(probs[:, i, 0]) & ~np.isnan(probs[:, j, 0])
            ei, ej = (probs[both, i].argmax(-1) != gold[both]), (probs[both, j].argmax(-1) != gold[both])
            assert shared[i, j] == both.sum()
            assert corr[i, j] == pytest.approx(np.corrcoef(ei, ej)[0, 1])


ESTIMATES = {"a": {"accuracy": 0.8, "accuracy_low": 0.7, "accuracy_high": 0.9},
             "b": {"accuracy": 0.6, "accuracy_low": 0.55, "accuracy_high": 0.65},
             "c": {"accuracy": 0.5},  # a point estimate without an interval
             "e": {"accuracy": 0.7, "accuracy_low": 0.6, "accuracy_high": 0.7}}


def _scores(**true):
    return {name: {"w2s_train": {"accuracy_where_answered": acc}} for name, acc in true.items()}


def test_teacher_analysis_says_whether_each_interval_covers_the_truth():
    analysis = teacher_analysis(ESTIMATES, _scores(a=0.85, b=0.7, c=0.6, d=0.9, e=0.7))
    assert analysis["a"]["covered"] is True and analysis["a"]["abs_error"] == pytest.approx(0.05)
    assert analysis["b"]["covered"] is False and analysis["b"]["abs_error"] == pytest.approx(0.1)
    assert analysis["c"]["covered"] is None and analysis["c"]["abs_error"] == pytest.approx(0.1)
    assert analysis["d"] == {"true_accuracy_w2s_train": 0.9, "estimated_accuracy": None,
                             "estimated_interval": [None, None], "covered": None, "abs_error": None}
    assert analysis["e"]["covered"] is True  # the interval's ends belong to it
    summary = estimates_summary(analysis)
    assert summary == {"coverage": pytest.approx(2 / 3), "n": 3, "mae": pytest.approx((0.05 + 0.1 + 0.1 + 0.0) / 4)}


def test_a_teacher_that_answered_nothing_is_neither_covered_nor_missed():
    analysis = teacher_analysis(ESTIMATES, _scores(a=math.nan))
    assert analysis["a"]["covered"] is None and analysis["a"]["abs_error"] is None
    assert estimates_summary(analysis) == {"coverage": None, "n": 0, "mae": None}


def _metrics(**extra):
    score = {s: {"accuracy": 0.7, "auroc": 0.7, "coverage": 1.0} for s in ("val", "test", "w2s_train")}
    return {"teachers": {"a": score, "b": score}, "aggregate": score, "ceiling": score, "student": score,
            "best_teacher": "a", "pgr": {s: {"vs_best_teacher": 0.5, "vs_aggregate": 0.5} for s in ("val", "test")},
            "misfit": {}, **extra}


def test_report_prints_the_coverage_table_and_the_pairs_that_err_together():
    analysis = teacher_analysis(ESTIMATES, _scores(a=0.85, b=0.7, d=0.9))
    errors = {"split": "val", "teachers": ["a", "b", "d"], "matrix": [[1.0, 0.62, None], [0.62, 1.0, 0.1],
                                                                       [None, 0.1, 1.0]],
              "n_shared": [[48, 40, 1], [40, 44, 30], [1, 30, 31]]}
    report = render_markdown(_metrics(teacher_analysis=analysis, teacher_estimates_summary=estimates_summary(analysis),
                                      teacher_error_correlation=errors))
    assert "| a | 0.800 [0.700, 0.900] | 0.850 | yes | 0.050 |" in report
    assert "| b | 0.600 [0.550, 0.650] | 0.700 | **no** | 0.100 |" in report
    assert "| d | - | 0.900 | - | - |" in report
    assert "Intervals covering the true accuracy: 0.50 of 2; mean absolute error of the estimates: 0.075." in report
    assert "## Teacher error correlation (val)" in report
    assert "| a (48) | 1.00 | 0.62 | - |" in report and "| b (44) | 0.62 | 1.00 | 0.10 |" in report
    assert "- a & b: r = 0.62 on 40 rows: err together" in report and "b & d" not in report


def test_error_correlation_heatmap_is_written(tmp_path):
    from weaks2strong.evaluate.teacher_plots import plot_error_correlation

    path = plot_error_correlation([[1.0, 0.3], [0.3, None]], [[10, 8], [8, 9]], tmp_path / "errors.png",
                                  teacher_names=["a", "b"])
    assert path.stat().st_size > 5_000
    with pytest.raises(ValueError, match=r"must be \(T, T\)"):
        plot_error_correlation(np.ones((2, 3)), np.ones((2, 3)), tmp_path / "bad.png")
