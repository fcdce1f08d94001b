import numpy as np
import pytest

from weaks2strong.aggregate.base import AggregatorError, check_probs
from weaks2strong.aggregate.classification import CrowdKitDawidSkene, MajorityVote, MeanProbabilities, SingleTeacher

NAN = [np.nan, np.nan]
PROBS = np.array([
    [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]],
    [[0.3, 0.7], NAN, [0.1, 0.9]],
    [NAN, [0.4, 0.6], [0.7, 0.3]],
])  # (N=3, T=3, K=2)


def test_mean_ignores_abstentions():
    post = MeanProbabilities().fit(PROBS).predict_proba(PROBS)
    assert np.allclose(post, [[(0.9 + 0.6 + 0.2) / 3, (0.1 + 0.4 + 0.8) / 3], [0.2, 0.8], [0.55, 0.45]])


def test_majority_vote_shares_and_ties():
    post = MajorityVote().fit(PROBS).predict_proba(PROBS)
    assert np.allclose(post, [[2 / 3, 1 / 3], [0.0, 1.0], [0.5, 0.5]])


def test_single_teacher_and_unknown_name():
    agg = SingleTeacher("b").fit(PROBS, ["a", "b", "c"])
    assert np.allclose(agg.predict_proba(PROBS)[0], [0.6, 0.4]) and np.allclose(agg.predict_proba(PROBS)[1], 0.5)
    with pytest.raises(AggregatorError, match="aggregator.teacher='z' is not one of the teachers"):
        SingleTeacher("z").fit(PROBS, ["a", "b", "c"])


def test_single_teacher_hard_answers_are_one_hot_and_abstentions_stay_uniform():
    probs = np.array([[[0.45, 0.55]], [[0.7, 0.3]], [[np.nan, np.nan]]])  # (N=3, T=1, K=2)
    agg = SingleTeacher("a", hard=True).fit(probs, ["a"])
    assert np.array_equal(agg.predict_proba(probs), [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    assert np.allclose(SingleTeacher("a").fit(probs, ["a"]).predict_proba(probs)[0], [0.45, 0.55])


def test_crowdkit_ds_baseline_runs_on_votes():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 300)
    votes = np.stack([np.where(rng.random(300) < acc, truth, 1 - truth) for acc in (0.9, 0.8, 0.7)], 1)
    probs = np.eye(2)[votes]
    post = CrowdKitDawidSkene().fit(probs).predict_proba(probs)
    assert (post.argmax(1) == truth).mean() > 0.85


def test_crowdkit_ds_gives_a_uniform_posterior_where_every_teacher_abstained():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 100)
    probs = np.eye(2)[np.stack([np.where(rng.random(100) < 0.85, truth, 1 - truth) for _ in range(3)], 1)]
    probs[[4, 9]] = np.nan  # nobody answered these two
    agg = CrowdKitDawidSkene().fit(probs).predict(probs)
    np.testing.assert_allclose(agg.posterior[[4, 9]], 0.5)
    np.testing.assert_allclose(agg.posterior.sum(1), 1.0)
    assert agg.confidence.min() >= 0.0


@pytest.mark.parametrize("probs, message", [
    (np.full((0, 2, 2), 0.5), "empty"),
    (np.array([[[0.5, np.nan], [0.5, 0.5]]]), "contain NaN"),
    (np.array([[[1.5, -0.5], [0.5, 0.5]]]), "negative probability"),
    (np.array([[[0.5, 0.6], [0.5, 0.5]]]), "sum to 1.1000"),
    (np.array([[NAN, [0.5, 0.5]]]), "has no labels at all"),
    (np.array([[[np.inf, 0.0], [0.5, 0.5]]]), "infinite"),
])
def test_check_probs_refuses_bad_input(probs, message):
    with pytest.raises(AggregatorError, match=message):
        check_probs(probs)


def test_snorkel_needs_three_teachers():
    from weaks2strong.aggregate.classification import SnorkelLabelModel

    with pytest.raises(AggregatorError, match="at least 3 teachers; got 2"):
        SnorkelLabelModel().fit(PROBS[:, :2])
    assert SnorkelLabelModel(n_epochs=50).fit(PROBS).predict_proba(PROBS).shape == (3, 2)
