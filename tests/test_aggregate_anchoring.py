"""The Bayesian aggregator away from home: gold rows as observed classes, abstentions as answers,
teachers that copy each other, and intervals that must cover the truth. All data are synthetic
with known truth, so every check is against a value the generator fixed."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_aggregate_bayes import _brute_force, confusion_matrix, hard_votes

from weaks2strong.aggregate.base import AggregatorError
from weaks2strong.aggregate.bayes import BayesianDawidSkene

FAST = dict(progress=False, steps=200)


def one_sided_rules(n, rules, seed=0):
    """Keyword-like rules: rule j votes its class c_j or abstains. ``rules``: (class, P(fire | class c),
    P(fire | other class)). Returns (probs (N, T, 2), truth, true precision of each rule)."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    probs = np.full((n, len(rules), 2), np.nan)
    for j, (c, hit, false_alarm) in enumerate(rules):
        fires = rng.random(n) < np.where(z == c, hit, false_alarm)
        probs[fires, j] = np.eye(2)[c]
    precision = [float((z[~np.isnan(probs[:, j, 0])] == c).mean()) for j, (c, _, _) in enumerate(rules)]
    return probs, z, precision


def majority_accuracy(probs, z):
    """Majority vote over the rules that fired; ties and silent rows score 1/2 (a uniform guess)."""
    votes = np.nan_to_num(probs).sum(1)  # (N, 2)
    tie = votes[:, 0] == votes[:, 1]
    return float(np.where(tie, 0.5, votes.argmax(1) == z).mean())


RULES = [(1, 0.55, 0.06), (1, 0.35, 0.07), (0, 0.6, 0.15), (0, 0.45, 0.06), (1, 0.7, 0.3)]


@pytest.mark.filterwarnings("ignore:mean teacher accuracy")  # random teachers: near chance on purpose
def test_semi_supervised_posterior_equals_brute_force_with_gold_clamped():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1.0, 1.0], size=(50, 3))  # (N, T, K) soft outputs
    probs[4, 2] = np.nan
    gold = np.full(50, -1)
    gold[:15] = rng.integers(0, 2, 15)
    model = BayesianDawidSkene(soft_bins=2, difficulty_levels=3, steps=40, progress=False).fit(probs, gold=gold)
    agg = model.predict(probs, gold=gold)
    post, diff = _brute_force(model, probs, gold)
    np.testing.assert_allclose(agg.posterior, post, atol=2e-5)
    np.testing.assert_allclose(agg.difficulty, diff, atol=2e-5)
    assert np.array_equal(agg.posterior[:15].argmax(1), gold[:15]) and agg.posterior[:15].max(1).min() == 1.0


def test_all_rows_observed_gives_empirical_confusions_plus_prior():
    truth = confusion_matrix([0.9, 0.7, 0.6], k=3, seed=4)
    probs, z = hard_votes(900, truth, pi=[0.5, 0.3, 0.2], seed=5)
    s, w, c = 2.0, 0.7, 3.0
    model = BayesianDawidSkene(soft_bins=1, difficulty=False, prior_strength=s, prior_diag=w, class_prior=c,
                               correlated="ignore", precision="float64", steps=400, tol=1e-10,
                               **{"progress": False}).fit(probs, gold=z)
    counts = np.einsum("iz,ita->tza", np.eye(3)[z], np.nan_to_num(probs))  # (T, K, K) empirical
    prior = np.where(np.eye(3, dtype=bool), s * w, s * (1 - w) / 2)  # pseudo-counts above 1 (the mode's -1)
    expected = (counts + prior) / (counts + prior).sum(-1, keepdims=True)
    np.testing.assert_allclose(model.globals_["confusion"].numpy(), expected, atol=1e-4)
    pi = np.bincount(z, minlength=3) + c / 3
    np.testing.assert_allclose(model.globals_["pi"].numpy(), pi / pi.sum(), atol=1e-4)


def test_gold_is_checked():
    probs, _ = hard_votes(40, confusion_matrix([0.8, 0.7], k=2), pi=[0.5, 0.5])
    with pytest.raises(AggregatorError, match="one entry per example"):
        BayesianDawidSkene(**FAST).fit(probs, gold=np.zeros(39, dtype=int))
    with pytest.raises(AggregatorError, match="example 3 is 2"):
        BayesianDawidSkene(**FAST).fit(probs, gold=np.array([0, 1, -1, 2] + [-1] * 36))


def test_two_copies_of_a_teacher_count_once():
    truth = confusion_matrix([0.8, 0.75, 0.7], k=2, seed=1)
    probs, _ = hard_votes(1500, truth, pi=[0.5, 0.5], seed=2)
    copied = np.concatenate([probs, probs[:, :1]], 1)  # teacher 0 twice
    kw = dict(soft_bins=1, difficulty=False, progress=False, correlated="downweight")  # no gold: forced on
    one = BayesianDawidSkene(**kw).fit(probs).predict(probs).posterior
    model = BayesianDawidSkene(**kw).fit(copied)
    two = model.predict(copied).posterior
    np.testing.assert_allclose(two, one, atol=2e-3)  # measured 3e-4
    np.testing.assert_allclose(model.teacher_weight_, [0.5, 1, 1, 0.5], atol=0.02)
    naive = BayesianDawidSkene(**{**kw, "correlated": "ignore"}).fit(copied).predict(copied).posterior
    assert np.abs(naive - one).max() > 0.3  # without the correction the copy outvotes the others


def test_one_sided_rules_are_identified_and_beat_majority_vote():
    probs, z, precision = one_sided_rules(3000, RULES, seed=0)
    model = BayesianDawidSkene(progress=False).fit(probs)
    post = model.predict(probs).posterior
    accuracy = float((post.argmax(1) == z).mean())
    assert accuracy > majority_accuracy(probs, z) + 0.02
    for j, name in enumerate(model.teacher_names_):
        assert abs(model.teachers_[name]["accuracy"] - precision[j]) < 0.06, name
    assert 0.3 < (post.argmax(1) == 1).mean() < 0.7  # no single-class collapse


def test_one_class_posterior_warns_naming_the_teachers():
    probs, _, _ = one_sided_rules(3000, RULES, seed=0)
    with pytest.warns(UserWarning, match="one class.*teacher 2"):
        BayesianDawidSkene(abstention="missing", progress=False).fit(probs)  # silence as missing: collapse


def test_silent_teachers_must_be_teachers():
    probs, _, _ = one_sided_rules(200, RULES, seed=0)
    with pytest.raises(AggregatorError, match="silent_teachers names 'nobody'"):
        BayesianDawidSkene(silent_teachers=["nobody"], **FAST).fit(probs)


def test_intervals_cover_the_true_accuracies():
    """Coverage is computed, not assumed: 8 synthetic sets x 4 teachers with known truth."""
    covered, cases = 0, 0
    for seed in range(8):
        truth = confusion_matrix([0.85, 0.75, 0.65, 0.6], k=2, seed=seed)
        probs, z = hard_votes(600, truth, pi=[0.55, 0.45], seed=100 + seed, abstain=0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BayesianDawidSkene(progress=False, difficulty=False).fit(probs)
        for j, name in enumerate(model.teacher_names_):
            stats = model.teachers_[name]
            answered = ~np.isnan(probs[:, j, 0])
            true = float((probs[answered, j].argmax(1) == z[answered]).mean())
            covered += stats["accuracy_low"] <= true <= stats["accuracy_high"]
            cases += 1
            assert stats["interval_method"] == "laplace"
    assert covered / cases >= 0.9, f"{covered}/{cases}"


def test_select_on_val_takes_the_best_held_out_setting():
    truth = confusion_matrix([0.85, 0.7, 0.65], k=2, seed=11)
    probs, z = hard_votes(500, truth, pi=[0.5, 0.5], seed=12)
    gold = np.full(500, -1)
    gold[:90] = z[:90]
    model = BayesianDawidSkene(select="val", progress=False).fit(probs, gold=gold)
    table = model.selection_["table"]
    assert len(table) == 8 and model.selection_["folds"] == 3
    best = max(table, key=lambda row: row["val_log_lik"])
    assert model.selection_["chosen"] == {k: v for k, v in best.items() if k != "val_log_lik"}
    assert (model.soft_bins, model.prior_strength) == (best["soft_bins"], best["prior_strength"])
    with pytest.raises(AggregatorError, match="select='val' needs gold rows"):
        BayesianDawidSkene(select="val", progress=False).fit(probs)


def test_cramers_v_is_one_for_copies_and_near_zero_for_independent_answers():
    from weaks2strong.aggregate.dependence import cramers_v, dependence_given_class

    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, 2000)
    assert cramers_v(x, x)[0] == pytest.approx(1.0, abs=1e-3)
    assert cramers_v(x, rng.integers(0, 3, 2000))[0] < 0.05
    votes = np.stack([x, x, rng.integers(0, 3, 2000)], 1)  # teachers 0 and 1 are copies
    dep = dependence_given_class(votes, rng.integers(0, 2, 2000), k=2)
    assert dep[0, 1] == pytest.approx(1.0, abs=1e-3) and dep[0, 2] == 0.0 and dep[1, 2] == 0.0  # 0: test not rejected
