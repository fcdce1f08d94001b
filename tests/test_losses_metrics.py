import math

import numpy as np
import pytest
import torch

from weaks2strong.evaluate import classification_metrics, misfit_gain, pgr, squared_error
from weaks2strong.models.losses import (
    harden_predictions,
    logconf_coefficient,
    logconf_loss,
    weighted_soft_cross_entropy,
)


def test_weighted_soft_cross_entropy_matches_hand_computation():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # p = [.25,.75], [.8,.2]
    targets = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    weights = torch.tensor([1.0, 3.0])
    ce1 = -math.log(0.75)
    ce2 = -(0.5 * math.log(0.8) + 0.5 * math.log(0.2))
    expected = (1 * ce1 + 3 * ce2) / 4
    assert weighted_soft_cross_entropy(logits, targets, weights).item() == pytest.approx(expected, rel=1e-6)


def test_zero_weight_examples_do_not_move_the_student():
    logits = torch.zeros(2, 2, requires_grad=True)
    loss = weighted_soft_cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1.0, 0.0]))
    loss.backward()
    assert torch.all(logits.grad[1] == 0) and torch.any(logits.grad[0] != 0)


def test_pgr():
    assert pgr(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert math.isnan(pgr(0.8, 0.7, 0.7))
    assert math.isnan(pgr(0.52, 0.76, 0.57))  # the ceiling below the weak teacher: no gap to recover


def test_misfit_and_gain_in_squared_loss_match_hand_values():
    student = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    labels = np.array([0, 1, 0])
    # err(p) = mean ||p - e_y||^2
    err_targets = np.mean([0.0, 2.0, 0.5])
    err_student = np.mean([0.02, 0.08, 0.32])
    misfit = np.mean([0.02, 1.28, 0.02])
    assert squared_error(targets, labels) == pytest.approx(err_targets)
    fit = misfit_gain(student, targets, labels, weights=np.array([1.0, 0.0, 1.0]))
    assert fit["gain"] == pytest.approx(err_targets - err_student)
    assert fit["misfit"] == pytest.approx(misfit)
    assert fit["misfit_weighted"] == pytest.approx(0.02)  # the zero-weight row does not count
    assert fit["gain_ge_misfit"] == bool(err_targets - err_student >= misfit)
    assert fit["gain_ge_misfit_weighted"] is True
    assert fit["disagreement"] == pytest.approx(1 / 3)


def test_classification_metrics_scores_abstentions_as_uniform_guesses():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [np.nan, np.nan], [0.3, 0.7]])
    m = classification_metrics(probs, np.array([0, 1, 1, 0]))
    assert m["coverage"] == pytest.approx(0.75)
    assert m["accuracy_where_answered"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)  # the abstention counts 1/K, not class 0
    four = classification_metrics(np.array([[np.nan] * 4, [0.1, 0.7, 0.1, 0.1]]), np.array([0, 1]))
    assert four["accuracy"] == pytest.approx((0.25 + 1) / 2)
    # a tie is not a vote for its first class: a uniform posterior row counts 1/K like an abstention
    tied = classification_metrics(np.full((3, 2), 0.5), np.array([0, 1, 1]))
    assert tied["accuracy"] == pytest.approx(0.5) and tied["coverage"] == 1.0


def test_logconf_loss_matches_burns_et_al_by_hand():
    # warm-up: alpha grows with the raw step fraction, then stays at aux_coef
    assert logconf_coefficient(0.05, aux_coef=0.5, warmup_frac=0.1) == pytest.approx(0.025)
    assert logconf_coefficient(0.5, aux_coef=0.5, warmup_frac=0.1) == pytest.approx(0.5)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    targets = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    # the targets' mean p_1 is 0.5, so half the rows (the two with the highest p_0) are hardened to class 0
    hard = harden_predictions(logits.softmax(-1), targets)
    torch.testing.assert_close(hard, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    alpha, weights = 0.5, torch.ones(4)
    mixed = (1 - alpha) * targets + alpha * hard
    expected = -(mixed * logits.log_softmax(-1)).sum(-1).mean()
    assert logconf_loss(logits, targets, weights, alpha).item() == pytest.approx(expected.item(), rel=1e-6)
    # alpha = 0 is the plain weighted soft cross-entropy
    assert logconf_loss(logits, targets, weights, 0.0).item() == pytest.approx(
        weighted_soft_cross_entropy(logits, targets, weights).item())


def test_ddp_normaliser_makes_the_mean_of_rank_losses_the_global_loss():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(10, 3, generator=g), torch.rand(10, 3, generator=g).softmax(-1)
    weights = torch.rand(10, generator=g)
    whole = weighted_soft_cross_entropy(logits, targets, weights)
    shards = [slice(0, 4), slice(4, 10)]  # uneven weight sums per rank
    normalizer = sum(weights[s].sum() for s in shards) / len(shards)
    per_rank = [weighted_soft_cross_entropy(logits[s], targets[s], weights[s], normalizer) for s in shards]
    torch.testing.assert_close(sum(per_rank) / len(shards), whole)  # what DDP's gradient averaging sees
    naive = sum(weighted_soft_cross_entropy(logits[s], targets[s], weights[s]) for s in shards) / len(shards)
    assert abs(naive - whole) > 1e-3  # without it, ranks with little weight would count too much


def test_balanced_confidence_weights_restore_the_posterior_class_mass():
    from weaks2strong.pipeline.classification.aggregate import example_weights

    posterior = np.array([[0.95, 0.05], [0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.45, 0.55]])  # (N, K)
    confidence = 2 * posterior.max(1) - 1  # rescaled max probability for K = 2
    plain = example_weights(confidence, "confidence", posterior)
    balanced = example_weights(confidence, "confidence_balanced", posterior)
    mass = lambda w: (w[:, None] * posterior).sum(0) / w.sum()  # noqa: E731
    assert not np.allclose(mass(plain), posterior.mean(0))  # confidence alone favours the sure class
    np.testing.assert_allclose(mass(balanced), posterior.mean(0), atol=1e-3)
    assert (balanced > 0).all()
