"""Tests of the generation-task aggregator (weaks2strong.aggregate.generation): the exact posterior
against brute-force Bayes, recovery of known teacher reliabilities on data drawn from the model,
the edge cases (one candidate, abstentions, gold "none of them"), bad input and the baselines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from weaks2strong.aggregate.answers import apply_bins
from weaks2strong.aggregate.base import AggregatorError
from weaks2strong.aggregate.generation import (
    BayesianCandidateAggregator,
    CandidateModel,
    best_single,
    candidate_data,
    joint_scores,
    majority_vote,
    teacher_answers,
)

F64 = dict(dtype=torch.float64)

# ------------------------------------------------------------------------------------ data


def generate(n, rel, cmax, none=0.1, hard=0.25, lam=0.5, seed=0, abstain=0.0):
    """Candidate scores drawn from the model itself: teacher t's answer in (true) confidence bin b is
    right with prob rel[t, b] on an easy example, a uniform guess with prob lam on a hard one, a
    uniform pick when no candidate is right. Its top score lies in a range set by the bin
    ([0.51, 0.65], [0.67, 0.81], [0.83, 0.97]), so quantile bins find the true ones.
    Returns (scores, n_candidates, z, answer, true bin), z = cmax for none of them."""
    rng = np.random.default_rng(seed)
    rel = np.asarray(rel)
    t, b = rel.shape
    nc = rng.integers(1, cmax + 1, n)  # (N,)
    z = np.where(rng.random(n) < none, cmax, (rng.random(n) * nc).astype(int))  # (N,)
    real = (z < cmax)[:, None]  # (N, 1)
    tb = rng.integers(0, b, (n, t))  # (N, T)
    right = real & ((rng.random((n, t)) < rel[np.arange(t), tb]) | (nc[:, None] == 1))
    u = (rng.random((n, t)) * (nc[:, None] - real)).astype(int)  # a wrong candidate, skipping z
    wrong = np.where(real & (u >= z[:, None]), u + 1, u)
    guess = (rng.random(n) < hard)[:, None] & (rng.random((n, t)) < lam)
    answer = np.where(guess, (rng.random((n, t)) * nc[:, None]).astype(int), np.where(right, z[:, None], wrong))
    top = 0.5 + 0.5 * (0.02 + 0.32 * tb + 0.28 * rng.random((n, t)))  # (N, T)
    valid = np.arange(cmax)[None, None, :] < nc[:, None, None]  # (N, 1, Cmax)
    named = np.arange(cmax)[None, None, :] == answer[..., None]  # (N, T, Cmax)
    rest = rng.gamma(1.0, size=(n, t, cmax)) * (valid & ~named)
    rest = rest / np.maximum(rest.sum(-1, keepdims=True), 1e-12) * (1.0 - top[..., None])
    scores = np.where(named, np.where(nc[:, None, None] == 1, 1.0, top[..., None]), rest)
    scores[rng.random((n, t)) < abstain] = np.nan
    return scores, nc, z, answer, tb


def brute_force(rel, none, rho, lam, answer, bins, nc, cmax, gold=None):
    """p(z_i | answers) by explicit enumeration: for every state and level, the prior times the
    product over the teachers that answered of their answer's probability, written out case by case."""
    out = np.zeros((len(nc), cmax + 1))
    for i, c in enumerate(nc):
        for s in [*range(c), cmax]:
            if gold is not None and gold[i] >= 0 and s != gold[i]:
                continue
            for d, lam_d in enumerate(lam):
                p = (none if s == cmax else (1 - none) / c) * rho[d]
                for t, a in enumerate(answer[i]):
                    if a < 0:
                        continue
                    r = rel[t, bins[i, t]]
                    if s == cmax:
                        easy = 1 / c
                    elif c == 1:
                        easy = 1.0
                    else:
                        easy = r if a == s else (1 - r) / (c - 1)
                    p *= (1 - lam_d) * easy + lam_d / c
                out[i, s] += p
    return out / out.sum(1, keepdims=True)


def make_model(t, b, cmax, lam):
    return CandidateModel(torch.full((t, b, 2), 2.0, **F64), torch.tensor([1.5, 2.5], **F64),
                          torch.full((len(lam),), 2.0, **F64), torch.tensor(lam, **F64), cmax)


def tiny(seed=0, n=40, t=3, b=2, cmax=4):
    """Random answers and bins with every candidate count 1..cmax and some abstentions."""
    rng = np.random.default_rng(seed)
    nc = np.resize(np.arange(1, cmax + 1), n)
    answer = (rng.random((n, t)) * nc[:, None]).astype(int)
    answer[rng.random((n, t)) < 0.2] = -1
    answer[0] = -1  # nobody answered: the prior
    bins = np.where(answer >= 0, rng.integers(0, b, (n, t)), 0)
    return answer, bins, nc


# ------------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("lam", [[0.0, 0.5], [0.0]])
def test_posterior_equals_brute_force(lam):
    answer, bins, nc = tiny()
    cmax = 4
    rng = np.random.default_rng(1)
    rel = rng.uniform(0.1, 0.95, (3, 2))
    none, rho = 0.2, np.array([0.7, 0.3]) if len(lam) == 2 else np.ones(1)
    model = make_model(3, 2, cmax, lam)
    gold = np.full(len(nc), -1)
    gold[[1, 5, 6]] = [0, cmax, 1]  # a candidate, none of them, a candidate
    for g in (None, gold):
        data = candidate_data(answer, bins, nc, cmax, g)
        post = model.candidate_posterior(torch.tensor(rel, **F64), torch.tensor(none, **F64),
                                         torch.tensor(rho, **F64), data).numpy()
        np.testing.assert_allclose(post, brute_force(rel, none, rho, lam, answer, bins, nc, cmax, g), atol=1e-6)
        assert (post[:, :cmax][np.arange(cmax)[None, :] >= nc[:, None]] == 0).all()  # padded states exactly 0
    assert post[5, cmax] == pytest.approx(1.0) and post[1, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(post[0, [0, cmax]], [1 - none, none])  # C = 1, nobody answered: the prior


def test_likelihood_is_a_distribution_over_the_candidates():
    """For every state, level, bin and C, a teacher's answer probabilities sum to one over the C candidates."""
    cmax, lam = 5, [0.0, 0.5]
    model = make_model(1, 2, cmax, lam)
    rel = torch.tensor([[0.3, 0.9]], **F64)
    for c in range(1, cmax + 1):
        for b in range(2):
            data = candidate_data(np.arange(c)[:, None], np.full((c, 1), b), np.full(c, c), cmax)
            lik = model.loglik(rel, data).exp()  # (C answers, S states, D)
            states = [*range(c), cmax]
            np.testing.assert_allclose(lik[:, states].sum(0).numpy(), 1.0, atol=1e-12)


def test_fitted_posterior_is_exact_under_fitted_globals():
    """The Pyro path (compute_marginals under the MAP guide) gives brute-force Bayes at the fitted globals."""
    scores, nc, z, _, _ = generate(150, [[0.6, 0.8, 0.9], [0.4, 0.6, 0.7]], cmax=5, seed=3, abstain=0.1)
    gold = np.where(np.arange(150) % 7 == 0, z, -1)
    agg = BayesianCandidateAggregator(steps=50).fit(scores, nc, gold=gold)
    answer, top = teacher_answers(scores)
    ex, te = np.nonzero(answer >= 0)
    bins = np.zeros_like(answer)
    bins[ex, te] = apply_bins(te, top[ex, te], agg.bin_edges_)
    g = {k: v.numpy() for k, v in agg.globals_.items()}
    for gl in (None, gold):
        want = brute_force(g["reliability"], float(g["none"]), g["rho"], [0.0, 0.5], answer, bins, nc, 5, gl)
        np.testing.assert_allclose(agg.predict_proba(scores, nc, gl), want, atol=1e-6)


# ------------------------------------------------------------------------------------ recovery


def test_recovers_known_reliabilities_and_beats_majority_vote():
    rel = np.array([[0.75, 0.85, 0.95], [0.45, 0.6, 0.75], [0.25, 0.4, 0.55]])  # ~0.85, 0.6, 0.4
    cmax = 12
    scores, nc, z, answer, _ = generate(2000, rel, cmax, seed=0)  # 1..12 candidates, 11% none, 25% hard
    agg = BayesianCandidateAggregator().fit(scores, nc, teacher_names=["a", "b", "c"])
    assert agg.reliability_.shape == (3, 3) and agg.reliability_interval_.shape == (3, 3, 2)
    assert np.abs(agg.reliability_ - rel).mean() < 0.05
    low, high = agg.reliability_interval_[..., 0], agg.reliability_interval_[..., 1]
    assert ((low <= agg.reliability_) & (agg.reliability_ <= high)).all()
    assert ((low <= rel) & (rel <= high)).mean() >= 8 / 9
    accuracy = np.array([(answer[:, t] == z).mean() for t in range(3)])
    np.testing.assert_allclose(agg.teacher_accuracy_, accuracy, atol=0.06)
    post = agg.predict_proba(scores, nc)
    np.testing.assert_allclose(post.sum(1), 1.0)
    assert (post.argmax(1) == z).mean() > (majority_vote(scores, nc).argmax(1) == z).mean() + 0.03
    assert set(agg.teachers_) == {"a", "b", "c"} and len(agg.teachers_["a"]["bin_edges"]) == 2


# ------------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("levels", [2, 1])
def test_single_candidates_abstentions_and_gold_none(levels):
    cmax = 4
    scores, nc, z, _, _ = generate(200, [[0.7, 0.9], [0.5, 0.7], [0.4, 0.6]], cmax, seed=2, abstain=0.15)
    scores[60:, 2] = np.nan  # teacher 2 answered only the first 60 rows
    scores[7] = np.nan  # nobody answered example 7
    one = np.array([0.0, 1.0, 0.0, 0.0])
    nc[8], scores[8] = 1, np.where(np.isnan(scores[8]), np.nan, one[[1, 0, 2, 3]])  # C = 1 rows
    gold = np.full(200, -1)
    gold[10:20] = cmax  # none of them
    gold[20:25] = 0
    agg = BayesianCandidateAggregator(difficulty_levels=levels, steps=60).fit(scores, nc, gold=gold)
    post = agg.predict_proba(scores, nc, gold)
    np.testing.assert_allclose(post.sum(1), 1.0)
    assert (post[:, :cmax][np.arange(cmax)[None, :] >= nc[:, None]] == 0).all()
    np.testing.assert_allclose(post[10:20, cmax], 1.0)
    np.testing.assert_allclose(post[20:25, 0], 1.0)
    single = np.nonzero(nc == 1)[0]
    single = single[(single < 10) | (single >= 25)]
    # one candidate: the answers say nothing, the posterior is the prior (1 - none, none)
    np.testing.assert_allclose(post[single][:, [0, cmax]], [[1 - agg.none_rate_, agg.none_rate_]] * len(single))
    assert agg.difficulty_.shape == (200,) and ((agg.difficulty_ >= 0) & (agg.difficulty_ <= 1)).all()
    assert np.isfinite(agg.teacher_accuracy_).all()
    # new examples with another Cmax; the same teachers
    new, new_nc, *_ = generate(30, [[0.7, 0.9], [0.5, 0.7], [0.4, 0.6]], 7, seed=9)
    out = agg.predict(new, new_nc)
    assert out.posterior.shape == (30, 8) and np.allclose(out.posterior.sum(1), 1)
    assert ((out.confidence > 0) & (out.confidence <= 1)).all()


# ------------------------------------------------------------------------------------ bad input


def _good(n=5, t=2, cmax=3):
    scores = np.zeros((n, t, cmax))
    scores[..., 0] = 1.0
    return scores, np.full(n, cmax)


def test_bad_input_names_the_example():
    agg = BayesianCandidateAggregator()
    scores, nc = _good()
    scores[3, 1] = [0.5, 0.2, 0.2]
    with pytest.raises(AggregatorError, match="teacher 1: scores at example 3 sum to 0.9000"):
        agg.fit(scores, nc)
    scores, nc = _good()
    nc[2] = 0
    with pytest.raises(AggregatorError, match="example 2 has n_candidates=0"):
        agg.fit(scores, nc)
    scores, nc = _good()
    nc[1] = 2
    scores[1, 0] = [0.8, 0.1, 0.1]
    with pytest.raises(AggregatorError, match="teacher 0: mass 0.1 on padded column 2 at example 1"):
        agg.fit(scores, nc)
    scores, nc = _good()
    scores[4, 0, 1] = np.nan
    with pytest.raises(AggregatorError, match="NaN at example 4"):
        agg.fit(scores, nc)
    scores, nc = _good()
    with pytest.raises(AggregatorError, match="gold at example 2 is 5"):
        agg.fit(scores, nc, gold=np.array([-1, -1, 5, -1, -1]))
    scores[:, 1] = np.nan
    with pytest.raises(AggregatorError, match="teacher 1 has no answers at all"):
        agg.fit(scores, nc)
    with pytest.raises(AggregatorError, match="not fitted"):
        BayesianCandidateAggregator().predict(*_good())


# ------------------------------------------------------------------------------------ baselines


def test_majority_vote_joint_scores_and_best_single_by_hand():
    nan = np.nan
    scores = np.array([
        [[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.9, 0.1, 0.0]],  # 2 votes for 0
        [[0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [nan, nan, nan]],  # 1-1 tie: summed prob 0.8 vs 1.2 -> 1
        [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]],  # one candidate
        [[nan] * 3] * 3,  # nobody answered
    ])
    nc = np.array([2, 2, 1, 3])
    mv = majority_vote(scores, nc)
    assert mv.shape == (4, 4)
    np.testing.assert_allclose(mv[0], [2 / 3, 1 / 3, 0, 0], atol=1e-5)
    np.testing.assert_allclose(mv[1], [0.5, 0.5, 0, 0], atol=1e-5)
    assert mv[1].argmax() == 1
    np.testing.assert_allclose(mv[2], [1, 0, 0, 0])
    np.testing.assert_allclose(mv[3], [1 / 3, 1 / 3, 1 / 3, 0])

    with np.errstate(divide="ignore"):
        logs = np.log(scores)
    js = joint_scores(logs, n_candidates=nc)
    p0 = np.array([0.6 * 0.3 * 0.9, 0.4 * 0.7 * 0.1])
    np.testing.assert_allclose(js[0, :2], p0 / p0.sum())
    p1 = np.array([0.6 * 0.2, 0.4 * 0.8])  # the abstaining teacher is skipped
    np.testing.assert_allclose(js[1, :2], p1 / p1.sum())
    np.testing.assert_allclose(js[2], [1, 0, 0, 0])
    np.testing.assert_allclose(js[3], [1 / 3, 1 / 3, 1 / 3, 0])
    w = np.array([2.0, 0.0, 1.0])
    pw = np.array([0.6 ** 2 * 0.9, 0.4 ** 2 * 0.1])
    np.testing.assert_allclose(joint_scores(logs, w, nc)[0, :2], pw / pw.sum())
    np.testing.assert_allclose(joint_scores(logs)[:3], js[:3])  # padding found from the -inf columns

    bs = best_single(scores, nc, 2)
    np.testing.assert_allclose(bs[0], [0.9, 0.1, 0, 0])
    np.testing.assert_allclose(bs[1], [0.5, 0.5, 0, 0])  # abstained: uniform over the candidates


def test_the_candidate_family_keeps_one_contract():
    """Every aggregator.method is a CandidateLabelModel class; the rules learn nothing and refuse gold;
    the single-teacher baseline answers with its teacher's greedy answer (column C_i where it gave none)."""
    from weaks2strong.aggregate.candidates import BayesianCandidateAggregator as Reexported
    from weaks2strong.aggregate.generation import METHODS, BestSingleTeacher, CandidateLabelModel

    assert set(METHODS) == {"bayes", "majority", "joint", "single"}
    assert all(issubclass(cls, CandidateLabelModel) for cls in METHODS.values())
    assert Reexported is BayesianCandidateAggregator and BayesianCandidateAggregator.supports_gold
    assert not any(METHODS[m].needs_fit or METHODS[m].supports_gold for m in ("majority", "joint", "single"))
    nan = np.nan
    scores = np.array([[[0.6, 0.4, 0.0], [0.3, 0.7, 0.0]], [[1.0, 0.0, 0.0], [nan, nan, nan]]])
    nc = np.array([2, 1])
    majority = METHODS["majority"]()
    assert majority.fit(scores, nc) is majority
    np.testing.assert_allclose(majority.predict_proba(scores, nc), majority_vote(scores, nc))
    with pytest.raises(AggregatorError, match="cannot use gold"):
        majority.fit(scores, nc, gold=np.array([0, -1]))
    with np.errstate(divide="ignore"):
        logs = np.log(scores)
    np.testing.assert_allclose(METHODS["joint"]().predict(logs, nc).posterior, joint_scores(logs, n_candidates=nc))
    greedy = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 0.0], [nan, nan, nan]]])
    np.testing.assert_allclose(BestSingleTeacher(1).predict_proba(greedy, nc), [[0, 1, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_allclose(BestSingleTeacher(0).predict_proba(greedy, nc), [[1, 0, 0, 0], [1, 0, 0, 0]])
