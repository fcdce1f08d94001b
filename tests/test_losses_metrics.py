import math

import numpy as np
import pytest
import torch

from weaks2strong.evaluate import classification_metrics, misfit, pgr
from weaks2strong.models.losses import weighted_soft_cross_entropy


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


def test_pgr_and_misfit():
    assert pgr(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert math.isnan(pgr(0.8, 0.7, 0.7))
    assert math.isnan(pgr(0.52, 0.76, 0.57))  # the ceiling below the weak teacher: no gap to recover
    student = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    fit = misfit(student, targets)
    assert fit["disagreement"] == pytest.approx(1 / 3)
    expected_kl = np.mean([-np.log(0.9), -np.log(0.2), 0.5 * np.log(0.5 / 0.6) + 0.5 * np.log(0.5 / 0.4)])
    assert fit["kl"] == pytest.approx(expected_kl, rel=1e-6)


def test_classification_metrics_scores_abstentions_as_guesses():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [np.nan, np.nan], [0.3, 0.7]])
    m = classification_metrics(probs, np.array([0, 1, 1, 0]))
    assert m["coverage"] == pytest.approx(0.75)
    assert m["accuracy_where_answered"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.5)  # the uniform row is a tie -> class 0 under threshold 0.5
    assert 0.0 <= m["auroc"] <= 1.0


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
