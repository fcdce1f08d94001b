"""The classification aggregators as a family (aggregate/classification/, one method per file): each is
a LabelModel that declares what it can do, the pipeline reads the declaration, and the weighted
majority vote's weights and posteriors match numbers worked out by hand here."""
import math

import numpy as np
import pytest

from weaks2strong.aggregate import classification
from weaks2strong.aggregate.base import AggregatorError, LabelModel
from weaks2strong.aggregate.bayes import BayesianDawidSkene
from weaks2strong.aggregate.classification import (
    CrowdKitDawidSkene,
    MajorityVote,
    MeanProbabilities,
    SingleTeacher,
    WeightedMajorityVote,
)
from weaks2strong.pipeline.classification import aggregate as pipeline_aggregate
from weaks2strong.runtime.errors import UserInputError

SUPPORTS_GOLD = {MajorityVote: False, MeanProbabilities: False, SingleTeacher: False, CrowdKitDawidSkene: False,
                 WeightedMajorityVote: True, BayesianDawidSkene: True}
NO_GOLD = [MajorityVote(), MeanProbabilities(), SingleTeacher("a"), CrowdKitDawidSkene()]


def dense(matrix, k: int = 2) -> np.ndarray:
    """(N, T) votes, -1 = abstain -> (N, T, K) one-hot probabilities with NaN rows, the pipeline's shape."""
    m = np.asarray(matrix)
    out = np.eye(k)[np.where(m < 0, 0, m)]
    out[m < 0] = np.nan
    return out


# ------------------------------------------------------------------------------------ declarations

def test_every_exported_class_is_a_label_model_with_declared_capabilities():
    exported = [getattr(classification, name) for name in classification.__all__]
    assert set(SUPPORTS_GOLD) - {BayesianDawidSkene} <= set(exported)
    for cls in exported + [BayesianDawidSkene]:
        assert issubclass(cls, LabelModel), cls
        assert isinstance(cls.supports_gold, bool) and isinstance(cls.needs_fit, bool), cls
        if cls in SUPPORTS_GOLD:
            assert cls.supports_gold is SUPPORTS_GOLD[cls], cls
    assert not MajorityVote.needs_fit and not MeanProbabilities.needs_fit and WeightedMajorityVote.needs_fit


@pytest.mark.parametrize("model", NO_GOLD, ids=lambda m: type(m).__name__)
def test_a_model_without_gold_support_refuses_gold_in_one_line(model):
    probs = dense([[0, 1], [1, 1], [0, 0]])
    with pytest.raises(AggregatorError, match=f"{type(model).__name__} cannot use gold labels") as info:
        model.fit(probs, ["a", "b"], gold=np.array([0, 1, -1]))
    assert "\n" not in str(info.value)


def test_anchor_val_is_refused_for_majority_vote_and_taken_by_models_that_support_gold(monkeypatch):
    train, val = dense([[0, 1], [1, 1]]), dense([[0, 0]])

    class Task:
        def labels(self, split):
            assert split == "val"
            return np.array([0])

    monkeypatch.setattr(pipeline_aggregate, "teacher_probs", lambda task, labels, split: {"w2s_train": train,
                                                                                           "val": val}[split])
    with pytest.raises(UserInputError) as info:
        pipeline_aggregate.anchored_rows(Task(), {}, "val", MajorityVote())
    assert str(info.value) == ("aggregator.anchor=val: MajorityVote cannot use gold labels; "
                               "set aggregator.anchor=none")
    for model in (WeightedMajorityVote(), BayesianDawidSkene()):
        probs, gold = pipeline_aggregate.anchored_rows(Task(), {}, "val", model)
        assert probs.shape == (3, 2, 2) and gold.tolist() == [-1, -1, 0]
    probs, gold = pipeline_aggregate.anchored_rows(Task(), {}, "none", MajorityVote())
    assert gold is None and probs is train


# ------------------------------------------------------------------------------------ weighted majority vote

def hand_checked_example():
    """Ten gold rows (class 0): teacher a is right on 9, b and c on 6 each. Then four unlabelled rows."""
    a = [0] * 9 + [1]
    b = [0] * 6 + [1] * 4
    c = [1] * 4 + [0] * 6
    gold_rows = np.stack([a, b, c], 1)  # (10, 3)
    free = np.array([
        [0, 1, 1],  # a outvoted by b and c
        [-1, -1, -1],  # nobody voted
        [-1, 0, 1],  # b against c: equal weights
        [1, -1, -1],  # a alone
    ])
    gold = np.array([0] * 10 + [-1] * 4)
    return np.concatenate([gold_rows, free]), gold


def test_weighted_majority_weights_and_posterior_by_hand():
    matrix, gold = hand_checked_example()
    model = WeightedMajorityVote().fit(dense(matrix), ["a", "b", "c"], gold=gold)
    # accuracies on gold: 9/10, 6/10, 6/10; K = 2, so w = log(a / (1 - a)): log 9, log 1.5, log 1.5
    np.testing.assert_allclose(model.accuracy_, [0.9, 0.6, 0.6])
    np.testing.assert_allclose(model.weights_, [math.log(9), math.log(1.5), math.log(1.5)])
    agg = model.predict(dense(matrix[10:]))
    # row 0: class 0 has e^{log 9} = 9 against class 1's e^{2 log 1.5} = 2.25: 9 / 11.25 = 0.8
    np.testing.assert_allclose(agg.posterior, [[0.8, 0.2], [0.5, 0.5], [0.5, 0.5], [0.1, 0.9]])
    np.testing.assert_allclose(agg.confidence, [0.6, 0.0, 0.0, 0.8])
    assert agg.teachers["a"] == {"accuracy": pytest.approx(0.9), "weight": pytest.approx(math.log(9))}
    # the plain vote goes the other way on row 0
    np.testing.assert_allclose(MajorityVote().predict_proba(dense(matrix[10:]))[0], [1 / 3, 2 / 3])
    # the same votes as an (N, T) matrix give the same fit and posterior
    again = WeightedMajorityVote().fit(matrix, ["a", "b", "c"], gold=gold)
    np.testing.assert_allclose(again.predict_proba(matrix[10:]), agg.posterior)


def test_weighted_majority_weight_counts_the_wrong_classes():
    # K = 3: a teacher right on 6 of 10 gold rows gets log(2 * 0.6 / 0.4) = log 3; one right on 9, log 18
    matrix = np.stack([[0] * 9 + [1], [0] * 6 + [1, 2, 1, 2]], 1)
    model = WeightedMajorityVote().fit(dense(matrix, k=3), gold=np.zeros(10, dtype=int))
    np.testing.assert_allclose(model.weights_, [math.log(18), math.log(3)])


def test_weighted_majority_without_enough_gold_uses_agreement_with_the_others():
    matrix = np.array([
        [0, 0, 0],  # a agrees with the others' majority (0): 1
        [0, 0, 1],  # the others tie 0-1, a's class is one of the two: 1/2
        [1, 0, 0],  # a against the others' 0: 0
        [0, 1, -1],  # the other (b) says 1: 0
        [1, -1, -1],  # a alone: no evidence either way
    ])
    gold = np.array([0, 0, 0, 0, -1])  # four gold rows per teacher: fewer than 5, so not used
    model = WeightedMajorityVote().fit(dense(matrix), gold=gold)
    # a: (1 + 1/2 + 0 + 0) / 4; b: rows 0..3 -> 1, 1/2 (a 0, c 1), 1 (a 1, c 0 tie: 1/2), 0 -> (1 + .5 + .5 + 0) / 4
    # c: rows 0..2 -> 1, 0 (others 0, 0), 1/2 (a 1, b 0) -> 1.5 / 3
    np.testing.assert_allclose(model.accuracy_, [1.5 / 4, 2 / 4, 1.5 / 3])
    low = 0.5 + 0.01  # all three below the floor 1/K + 0.01
    np.testing.assert_allclose(model.weights_, math.log(low / (1 - low)))
    with_gold = WeightedMajorityVote().fit(dense(matrix[:4].repeat(2, 0)), gold=np.zeros(8, dtype=int))
    np.testing.assert_allclose(with_gold.accuracy_, [0.75, 0.75, 2 / 3])  # 8, 8 and 6 gold votes: gold it is


def test_weighted_majority_beats_majority_with_one_accurate_teacher_among_noisy_ones():
    rng = np.random.default_rng(0)
    n = 2000
    truth = rng.integers(0, 2, n)
    votes = np.stack([np.where(rng.random(n) < acc, truth, 1 - truth) for acc in (0.9, 0.6, 0.6, 0.6, 0.6)], 1)
    votes[rng.random(votes.shape) < 0.1] = -1  # some abstentions
    probs = dense(votes)
    accuracy = lambda post, rows=slice(None): (post[rows].argmax(1) == truth[rows]).mean()  # noqa: E731
    majority = accuracy(MajorityVote().fit(probs).predict_proba(probs))
    weighted = WeightedMajorityVote().fit(probs)
    assert weighted.accuracy_.argmax() == 0  # the accurate teacher is found without gold
    assert accuracy(weighted.predict_proba(probs)) > majority + 0.03
    gold = np.where(np.arange(n) < 100, truth, -1)
    anchored = WeightedMajorityVote().fit(probs, gold=gold).predict_proba(probs)
    assert accuracy(anchored, slice(100, None)) > majority + 0.07


def test_weighted_majority_must_be_fitted_on_the_same_teachers():
    probs = dense([[0, 1], [1, 1]])
    with pytest.raises(AggregatorError, match="not fitted"):
        WeightedMajorityVote().predict(probs)
    with pytest.raises(AggregatorError, match="expected 2 teachers as fitted, got 3"):
        WeightedMajorityVote().fit(probs).predict(dense([[0, 1, 1]]))


# ------------------------------------------------------------------------------------ inputs beyond dense

def test_votes_and_matrices_give_what_the_dense_array_gives():
    from weaks2strong.aggregate.votes import Votes

    matrix = np.array([[0, 1, -1], [1, 1, 0], [-1, -1, -1], [2, 2, 1]])
    probs = dense(matrix, k=3)
    for model in (MajorityVote(), MeanProbabilities(), SingleTeacher("teacher_1"), WeightedMajorityVote()):
        expected = model.fit(probs).predict_proba(probs)
        np.testing.assert_allclose(model.fit(matrix).predict_proba(matrix), expected)
        votes = Votes.from_matrix(matrix, 3)
        np.testing.assert_allclose(model.fit(votes).predict_proba(votes), expected)
