"""The Bayesian candidate aggregator for generation tasks: which of an example's candidate answers is
correct, or none of them.

The Bayesian model is the classification Dawid-Skene of ``bayes_model.py`` cut down to what a
per-example candidate set allows: candidates are not shared across examples, so there is no confusion
matrix, only a one-coin reliability per teacher and confidence bin (Dawid & Skene 1979's one-coin
variant; GLAD's per-example difficulty, Whitehill et al. 2009, as a discrete mixture). The input
shapes are those of ``base.py``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.ops.indexing import Vindex
from scipy import stats
from torch.distributions import biject_to, constraints

from ..answers import apply_bins, bin_edges
from ..base import Aggregate, AggregatorError
from ..bayes_model import torch_threads
from ..laplace import MIN_PRECISION
from .base import CandidateLabelModel, check_candidates, check_gold, teacher_answers

# --------------------------------------------------------------------------------------------
# The Pyro model
# --------------------------------------------------------------------------------------------


@dataclass
class CandidateData:
    """Per-example tensors for the model. States s = 0..Cmax: s < C_i candidate s, s = Cmax none of them."""

    answer: torch.Tensor  # (N, T) int64, the candidate teacher t named; -1 = abstained
    bins: torch.Tensor  # (N, T) int64, confidence bin of that answer (0 where abstained)
    n_cand: torch.Tensor  # (N,) int64, C_i
    clamp: torch.Tensor  # (N, Cmax+1) float: 0 where z may be, -inf elsewhere (observed gold)

    @property
    def n(self) -> int:
        return self.answer.shape[0]


def candidate_data(answer, bins, n_candidates, cmax: int, gold=None, dtype=torch.float64,
                   device="cpu") -> CandidateData:
    """Arrays -> CandidateData; ``gold`` rows get a log-indicator clamp on z (semi-supervised)."""
    n = len(n_candidates)
    clamp = torch.zeros((n, cmax + 1), dtype=dtype, device=device)
    if gold is not None:
        rows = np.nonzero(gold >= 0)[0]
        clamp[rows] = float("-inf")
        clamp[rows, gold[rows]] = 0.0
    as_long = dict(dtype=torch.int64, device=device)
    return CandidateData(torch.as_tensor(answer, **as_long), torch.as_tensor(bins, **as_long),
                         torch.as_tensor(n_candidates, **as_long), clamp)


class CandidateModel:
    """Generative story (shapes: T teachers, B confidence bins, D difficulty levels, S = Cmax + 1 states):

        reliability[t, b] ~ Beta(rel_conc[t, b])      # (T, B) P(t's answer is right | easy, bin b, C_i >= 2)
        none ~ Beta(none_conc)                        # () P(no candidate of an example is right)
        rho ~ Dirichlet(alpha_rho)                    # (D,) difficulty-level prior
        for each example i (C_i candidates):
            z_i ~ none with prob `none`, else uniform over its C_i candidates   # observed where gold is (clamp)
            d_i ~ Categorical(rho)
            for each teacher t that answered, with confidence bin b_it (observed, conditioned on):
                a_it ~ (1 - lam[d_i]) * easy(. | z_i, r) + lam[d_i] * Uniform(C_i candidates)
                easy(a | z = c, r) = r              if a == c
                                   = (1 - r) / (C_i - 1)  otherwise       (C_i >= 2)
                easy(a | z = c)    = 1              (C_i == 1: the one candidate is all t can name)
                easy(a | z = none) = 1 / C_i        (every candidate is wrong, none preferred)
            with r = reliability[t, b_it].

    Each line is a proper distribution over the C_i candidates a teacher can name (a wrong answer is
    spread evenly over the other candidates; under "none" all are wrong alike), so what tells a
    candidate from "none" is whether the teachers agree on it more than chance (1/C_i) allows. With
    C_i == 1 the answers carry no evidence at all and the posterior is the prior (1 - none, none),
    moved only by gold. Abstentions get no factor (missing at random).
    """

    def __init__(self, rel_conc, none_conc, alpha_rho, lam, cmax: int):
        self.rel_conc = rel_conc  # (T, B, 2) Beta(alpha, beta) per teacher and bin
        self.none_conc = none_conc  # (2,)
        self.alpha_rho = alpha_rho  # (D,)
        self.lam = lam  # (D,) share of guesses at each difficulty level; lam[0] = 0
        self.T, self.B = rel_conc.shape[:2]
        self.D = lam.shape[0]
        self.cmax = cmax
        self.S = cmax + 1

    def z_logits(self, none, n_cand) -> torch.Tensor:
        """log p(z_i): (N, S); -inf on padded states."""
        c = n_cand.to(none.dtype)  # (N,)
        valid = torch.arange(self.cmax, device=n_cand.device)[None, :] < n_cand[:, None]  # (N, Cmax)
        real = (torch.log1p(-none) - c.log())[:, None].expand(-1, self.cmax)  # (N, Cmax)
        real = torch.where(valid, real, real.new_full((), float("-inf")))
        return torch.cat([real, none.log().expand(c.shape[0], 1)], 1)  # (N, S)

    def loglik(self, reliability, data: CandidateData) -> torch.Tensor:
        """log p(answers of example i | z, d), summed over its teachers: (N, S, D)."""
        n = data.n
        spoke = data.answer >= 0  # (N, T)
        r = reliability[torch.arange(self.T, device=spoke.device)[None, :], data.bins]  # (N, T)
        c = data.n_cand.to(r.dtype)[:, None]  # (N, 1)
        single = c == 1
        hit_easy = torch.where(single, torch.ones_like(r), r)  # (N, T)
        miss_easy = (1.0 - r) / (c - 1.0).clamp_min(1.0)  # (N, T); never used where C_i == 1
        lam = self.lam  # (D,)
        guess = (lam / c)[:, None, :]  # (N, 1, D)
        hit = torch.log((1.0 - lam) * hit_easy[..., None] + guess)  # (N, T, D)
        miss = torch.log((1.0 - lam) * miss_easy[..., None] + guess)  # (N, T, D)
        zero = hit.new_zeros(())
        hit = torch.where(spoke[..., None], hit, zero)
        miss = torch.where(spoke[..., None], miss, zero)
        named = torch.nn.functional.one_hot(data.answer.clamp_min(0), self.cmax).to(r.dtype)  # (N, T, Cmax)
        named = named * spoke[..., None]
        real = miss.sum(1)[:, None, :] + torch.einsum("ntc,ntd->ncd", named, hit - miss)  # (N, Cmax, D)
        none = -(spoke.sum(1).to(r.dtype) * c[:, 0].log())  # (N,) every answer has prob 1/C_i
        return torch.cat([real, none[:, None, None].expand(n, 1, self.D)], 1)  # (N, S, D)

    def joint_posterior(self, reliability, none, rho, data: CandidateData) -> torch.Tensor:
        """p(z_i, d_i | answers, globals): (N, S, D). Plain torch."""
        logq = self.loglik(reliability, data) + (data.clamp + self.z_logits(none, data.n_cand))[..., None]
        if self.D > 1:
            logq = logq + rho.log()
        return torch.softmax(logq.reshape(data.n, -1), -1).reshape(logq.shape)

    def candidate_posterior(self, reliability, none, rho, data: CandidateData) -> torch.Tensor:
        """p(z_i | answers, globals), d summed out: (N, S), last column = none of them."""
        return self.joint_posterior(reliability, none, rho, data).sum(-1)

    def log_joint(self, reliability, none, rho, data: CandidateData) -> torch.Tensor:
        """log p(globals, answers, observed gold) with z and d summed out (for the Laplace approximation)."""
        lp = dist.Beta(self.rel_conc[..., 0], self.rel_conc[..., 1]).log_prob(reliability).sum()
        lp = lp + dist.Beta(self.none_conc[0], self.none_conc[1]).log_prob(none)
        logq = self.loglik(reliability, data) + (data.clamp + self.z_logits(none, data.n_cand))[..., None]
        if self.D > 1:
            lp = lp + dist.Dirichlet(self.alpha_rho).log_prob(rho)
            logq = logq + rho.log()
        return lp + torch.logsumexp(logq.reshape(data.n, -1), -1).sum()

    @torch.no_grad()
    def em_step(self, values: dict, data: CandidateData) -> dict:
        """One closed-form MAP-EM sweep. E: q(z, d) per example and, per answer, the chance it came
        from the easy component rather than the guess; M: reliability[t, b] = (expected right easy
        answers + alpha - 1) / (expected easy answers + alpha + beta - 2), likewise none and rho.
        Answers on C_i == 1 examples or under z = none do not involve r and count for nothing."""
        rel, none, rho = values["reliability"], values["none"], values.get("rho")
        q = self.joint_posterior(rel, none, rho, data)  # (N, S, D)
        n, d = data.n, self.D
        use = (data.answer >= 0) & (data.n_cand >= 2)[:, None]  # (N, T)
        q_hit = torch.gather(q, 1, data.answer.clamp_min(0)[..., None].expand(-1, -1, d))  # (N, T, D)
        q_miss = (q[:, :-1].sum(1)[:, None, :] - q_hit).clamp_min(0.0)  # (N, T, D) z is another candidate
        r = rel[torch.arange(self.T)[None, :], data.bins]  # (N, T)
        c = data.n_cand.to(r.dtype)[:, None, None]  # (N, 1, 1)
        guess = self.lam / c  # (N, 1, D)
        easy_h = (1.0 - self.lam) * r[..., None]  # (N, T, D)
        easy_m = (1.0 - self.lam) * (1.0 - r[..., None]) / (c - 1.0).clamp_min(1.0)
        hits = (q_hit * easy_h / (easy_h + guess)).sum(-1)[use]  # (m,)
        misses = (q_miss * easy_m / (easy_m + guess)).sum(-1)[use]
        flat = (torch.arange(self.T)[None, :] * self.B + data.bins)[use]  # (m,)
        n_hit = r.new_zeros(self.T * self.B).index_add_(0, flat, hits).reshape(self.T, self.B)
        n_miss = r.new_zeros(self.T * self.B).index_add_(0, flat, misses).reshape(self.T, self.B)
        a, b = self.rel_conc[..., 0], self.rel_conc[..., 1]
        out = dict(values)
        out["reliability"] = ((n_hit + a - 1.0) / (n_hit + n_miss + a + b - 2.0)).clamp(1e-6, 1 - 1e-6)
        a0, b0 = self.none_conc
        out["none"] = ((q[:, -1].sum() + a0 - 1.0) / (n + a0 + b0 - 2.0)).clamp(1e-6, 1 - 1e-6)
        if d > 1:
            m = (q.sum((0, 1)) + self.alpha_rho - 1.0).clamp_min(1e-6)
            out["rho"] = m / m.sum()
        return out

    def model(self, data: CandidateData):
        with pyro.plate("teachers", self.T, dim=-1):
            reliability = pyro.sample("reliability", dist.Beta(self.rel_conc[..., 0], self.rel_conc[..., 1])
                                      .to_event(1))  # (T, B)
        none = pyro.sample("none", dist.Beta(self.none_conc[0], self.none_conc[1]))  # ()
        rho = pyro.sample("rho", dist.Dirichlet(self.alpha_rho)) if self.D > 1 else None  # (D,)
        with pyro.plate("examples", data.n, dim=-1):
            ll = self.loglik(reliability, data) + data.clamp[..., None]  # (N, S, D); gold pins z
            z = pyro.sample("z", dist.Categorical(logits=self.z_logits(none, data.n_cand)),
                            infer={"enumerate": "parallel"})  # (S, 1) enumerated
            if self.D > 1:
                d = pyro.sample("d", dist.Categorical(rho), infer={"enumerate": "parallel"})  # (D, 1, 1)
                pyro.factor("answers", Vindex(ll)[..., z, d])  # (D, S, N)
            else:
                pyro.factor("answers", Vindex(ll)[..., z, 0])  # (S, N)

    def make_guide(self, values: dict):
        """MAP (delta) guide over the globals; ``values`` holds unconstrained tensors being optimised."""
        unit, simplex = biject_to(constraints.unit_interval), biject_to(constraints.simplex)

        def guide(data: CandidateData):
            with pyro.plate("teachers", self.T, dim=-1):
                pyro.sample("reliability", dist.Delta(unit(values["reliability"]), event_dim=1))
            pyro.sample("none", dist.Delta(unit(values["none"])))
            if self.D > 1:
                pyro.sample("rho", dist.Delta(simplex(values["rho"]), event_dim=1))

        return guide

# --------------------------------------------------------------------------------------------
# The aggregator
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class BayesianCandidateAggregator(CandidateLabelModel):
    """Bayesian aggregation of weak LMs' answers over per-example candidate sets (``CandidateModel``).

    **Answers.** Teacher t's answer on example i is the argmax of its scores over the C_i candidates,
    its confidence the max probability, binned into ``bins`` per-teacher quantile bins (edges from
    the teacher's own confidences on the fit examples with C_i >= 2; ties collapse bins, as in
    ``answers.bin_edges``). ``reliability_[t, b]`` is then the chance that t's answer in bin b is
    right on an easy example: the model learns each teacher's calibration.

    **Difficulty.** ``difficulty_levels=2``: lam = [0, max_difficulty] (0.5): on a hard example half
    of every teacher's answers are uniform guesses, so teachers that disagree more than their
    reliabilities predict mark the example hard and its posterior moves towards the prior. lam is
    fixed, not learned: with a reliability per bin, a learned lam trades off against r (a world of
    all-hard examples with reliable teachers fits as well as an easy one with worse teachers), and
    fixing it keeps "hard" meaning the same across fits and the EM start closed form; rho is learned.

    **Inference.** z (Cmax + 1 states, padded ones masked with -inf prior) and d are enumerated
    exactly (``TraceEnum_ELBO``; marginals by ``compute_marginals``). The globals get a MAP (delta)
    guide fitted by full-batch SVI with Adam, stopping on a plateau, started from up to ``init_em``
    closed-form MAP-EM sweeps of the same model (from r at its prior mean, i.e. weighted voting).
    ``gold`` rows clamp z (a log-indicator; Cmax = none of them) while their answers still inform r.

    **Intervals.** ``reliability_interval_`` (central ``credible_mass``): a Laplace approximation of
    the posterior of the globals at the MAP in logit / log-ratio coordinates (Jacobian included,
    eigenvalues floored at one pseudo-count as in ``laplace.py``), mapped back through the sigmoid.

    **Priors** (pseudo-counts): reliability ~ Beta with mean ``prior_reliability`` (> 0.5 favours
    teachers that are more often right than wrong, which on two-candidate examples pins the
    otherwise symmetric "every teacher is usually wrong" mode) and ``prior_strength`` counts;
    none ~ Beta with mean ``none_rate`` and ``none_prior`` counts; rho ~ Dirichlet(1 + difficulty_prior / D).
    """

    supports_gold = True  # ClassVar of CandidateLabelModel (no annotation: not a dataclass field)

    bins: int = 3
    difficulty_levels: int = 2
    max_difficulty: float = 0.5
    prior_strength: float = 2.0
    prior_reliability: float = 0.7
    none_rate: float = 0.2
    none_prior: float = 2.0
    difficulty_prior: float = 2.0
    init_em: int = 50
    steps: int = 300
    lr: float = 0.05
    tol: float = 1e-5
    credible_mass: float = 0.95
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self):
        if self.bins < 1:
            raise AggregatorError(f"bins must be >= 1, got {self.bins}")
        if self.difficulty_levels not in (1, 2):
            raise AggregatorError(f"difficulty_levels must be 1 or 2, got {self.difficulty_levels}")
        if self.difficulty_levels == 2 and not 0 < self.max_difficulty < 1:
            raise AggregatorError(f"max_difficulty must lie in (0, 1), got {self.max_difficulty}")
        for name in ("prior_reliability", "none_rate"):
            if not 0 < getattr(self, name) < 1:
                raise AggregatorError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if self.prior_strength <= 0 or self.none_prior <= 0 or self.difficulty_prior <= 0:
            raise AggregatorError("prior_strength, none_prior and difficulty_prior must be > 0 (a proper MAP)")

    # ---------------------------------------------------------------- public face

    def fit(self, scores, n_candidates, gold=None, teacher_names: list[str] | None = None):
        """Fit the globals (reliabilities, none rate, difficulty prior) on (N, T, Cmax) candidate scores."""
        scores, nc = check_candidates(scores, n_candidates, teacher_names)
        n, t, cmax = scores.shape
        self.teacher_names_ = list(teacher_names) if teacher_names is not None else [f"teacher {j}" for j in range(t)]
        gold = check_gold(gold, nc, cmax)
        answer, top = teacher_answers(scores)
        silent = (answer < 0).all(0)
        if silent.any():
            raise AggregatorError(f"{self.teacher_names_[int(np.argmax(silent))]} has no answers at all "
                                  "(abstained on every example)")
        pyro.set_rng_seed(self.seed)
        ex, te = np.nonzero((answer >= 0) & (nc >= 2)[:, None])  # binning: only where a choice existed
        self.bin_edges_ = bin_edges(te, top[ex, te], t, self.bins)
        self.n_bins_ = np.array([e.size + 1 for e in self.bin_edges_])  # (T,) bins each teacher uses
        b = int(self.n_bins_.max())
        data = self._data(answer, top, nc, cmax, gold)
        model = self._model(b, cmax)
        with torch_threads(self.threads):
            values = self._init(model, data)
            self._optimise(model, data, values)
            self._intervals(model, data)
        self.teacher_accuracy_ = np.full(t, np.nan)
        post = self.predict_proba(scores, nc, gold)  # the training posterior, gold rows clamped
        self.fit_difficulty_ = self.difficulty_
        for j in range(t):
            rows = np.nonzero(answer[:, j] >= 0)[0]
            self.teacher_accuracy_[j] = post[rows, answer[rows, j]].mean()
        self.n_gold_ = 0 if gold is None else int((gold >= 0).sum())
        return self

    def predict(self, scores, n_candidates, gold=None) -> Aggregate:
        """Exact posteriors under the fitted globals (any Cmax; the same teachers). ``confidence`` is
        the posterior probability of the best real candidate; ``difficulty`` P(hard | answers)."""
        self._require_fit()
        scores, nc = check_candidates(scores, n_candidates, self.teacher_names_)
        if scores.shape[1] != len(self.teacher_names_):
            raise AggregatorError(f"expected {len(self.teacher_names_)} teachers as fitted, got {scores.shape[1]}")
        n, _, cmax = scores.shape
        gold = check_gold(gold, nc, cmax)
        answer, top = teacher_answers(scores)
        data = self._data(answer, top, nc, cmax, gold)
        model = self._model(self.globals_["reliability"].shape[1], cmax)
        guide = model.make_guide(self._guide_values)
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
        with torch.no_grad(), torch_threads(self.threads):
            marg = elbo.compute_marginals(model.model, guide, data)
        post = marg["z"].probs.reshape(n, cmax + 1).double().cpu().numpy()
        valid = np.concatenate([np.arange(cmax)[None, :] < nc[:, None], np.ones((n, 1), dtype=bool)], 1)
        post = np.where(valid, post, 0.0)
        post /= post.sum(1, keepdims=True)
        if model.D > 1:
            self.difficulty_ = marg["d"].probs.reshape(n, model.D)[:, 1].double().cpu().numpy()
        else:
            self.difficulty_ = np.zeros(n)
        return Aggregate(posterior=post, confidence=post[:, :-1].max(1), difficulty=self.difficulty_,
                         teachers=self.teachers_)

    def predict_proba(self, scores, n_candidates, gold=None) -> np.ndarray:
        """(N, Cmax + 1) posterior: candidates, then none of them; padded columns exactly 0."""
        return self.predict(scores, n_candidates, gold).posterior

    def fit_predict(self, scores, n_candidates, gold=None, teacher_names=None) -> Aggregate:
        """Fit, then the posteriors of every row as if unlabelled (gold rows are scored, not copied)."""
        return self.fit(scores, n_candidates, gold, teacher_names).predict(scores, n_candidates)

    @property
    def teachers_(self) -> dict:
        """name -> accuracy, per-bin reliability with its interval, bin edges (JSON-friendly)."""
        if not hasattr(self, "reliability_"):
            return {}
        out = {}
        for j, name in enumerate(self.teacher_names_):
            nb = int(self.n_bins_[j])
            acc = getattr(self, "teacher_accuracy_", np.full(len(self.teacher_names_), np.nan))[j]
            out[name] = {
                "accuracy": float(acc),
                "reliability": self.reliability_[j, :nb].tolist(),
                "reliability_low": self.reliability_interval_[j, :nb, 0].tolist(),
                "reliability_high": self.reliability_interval_[j, :nb, 1].tolist(),
                "bin_edges": self.bin_edges_[j].tolist(),
            }
        return out

    # ---------------------------------------------------------------- fitting

    def _require_fit(self):
        if not hasattr(self, "globals_"):
            raise AggregatorError("BayesianCandidateAggregator is not fitted yet; call fit() first")

    def _data(self, answer, top, nc, cmax, gold) -> CandidateData:
        n, t = answer.shape
        ex, te = np.nonzero(answer >= 0)
        bins = np.zeros((n, t), dtype=np.int64)
        bins[ex, te] = apply_bins(te, top[ex, te], self.bin_edges_)
        return candidate_data(answer, bins, nc, cmax, gold)

    def _model(self, b: int, cmax: int) -> CandidateModel:
        t = len(self.teacher_names_)
        f = dict(dtype=torch.float64)
        a = 1.0 + self.prior_strength * self.prior_reliability
        rel_conc = torch.tensor([a, 2.0 + self.prior_strength - a], **f).expand(t, b, 2).clone()
        a0 = 1.0 + self.none_prior * self.none_rate
        d = self.difficulty_levels
        lam = torch.tensor([0.0, self.max_difficulty] if d == 2 else [0.0], **f)
        return CandidateModel(rel_conc, torch.tensor([a0, 2.0 + self.none_prior - a0], **f),
                              torch.full((d,), 1.0 + self.difficulty_prior / d, **f), lam, cmax)

    def _init(self, model: CandidateModel, data: CandidateData) -> dict:
        """r at its prior mean (weighted voting), then closed-form MAP-EM sweeps to near the mode."""
        f = dict(dtype=torch.float64)
        vals = {"reliability": torch.full((model.T, model.B), self.prior_reliability, **f),
                "none": torch.tensor(self.none_rate, **f),
                "rho": torch.linspace(2.0, 1.0, model.D, **f)}  # most examples start easy
        vals["rho"] = vals["rho"] / vals["rho"].sum()
        for _ in range(self.init_em):
            new = model.em_step(vals, data)
            moved = max(float((new[k] - vals[k]).abs().max()) for k in vals)
            vals = new
            if moved < 1e-6:
                break
        unit, simplex = biject_to(constraints.unit_interval), biject_to(constraints.simplex)
        inv = {"reliability": unit.inv, "none": unit.inv, "rho": simplex.inv}
        return {k: inv[k](v).detach().clone().requires_grad_(True) for k, v in vals.items()}

    def _optimise(self, model: CandidateModel, data: CandidateData, values: dict):
        names = ["reliability", "none"] + (["rho"] if model.D > 1 else [])
        guide = model.make_guide(values)
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
        optim = torch.optim.Adam([values[k] for k in names], lr=self.lr)
        window, losses, decayed, since = 10, [], False, 0
        started = time.perf_counter()
        for _ in range(self.steps):
            optim.zero_grad(set_to_none=True)
            loss = elbo.differentiable_loss(model.model, guide, data)
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()) / data.n)  # per example, so tol means the same at any N
            if len(losses) - since >= 2 * window and len(losses) % window == 0:
                now, before = np.mean(losses[-window:]), np.mean(losses[-2 * window:-window])
                if before - now < self.tol * max(abs(now), 1e-8):
                    if decayed:
                        break
                    decayed, since = True, len(losses)  # plateau: a smaller step settles Adam on the mode
                    for group in optim.param_groups:
                        group["lr"] *= 0.2
        self.fit_seconds_ = time.perf_counter() - started
        self.n_steps_ = len(losses)
        self.loss_history_ = losses
        unit, simplex = biject_to(constraints.unit_interval), biject_to(constraints.simplex)
        self._guide_values = {k: values[k].detach() for k in names}
        with torch.no_grad():
            self.globals_ = {"reliability": unit(values["reliability"]).detach(), "none": unit(values["none"]).detach()}
            if model.D > 1:
                self.globals_["rho"] = simplex(values["rho"]).detach()
        g = self.globals_
        self.none_rate_ = float(g["none"])
        self.rho_ = g["rho"].numpy() if model.D > 1 else np.ones(1)
        rel = np.full((model.T, self.bins), np.nan)
        rel[:, : model.B] = g["reliability"].numpy()
        rel[np.arange(self.bins)[None, :] >= self.n_bins_[:, None]] = np.nan  # bins a teacher never uses
        self.reliability_ = rel

    def _intervals(self, model: CandidateModel, data: CandidateData):
        """Laplace at the MAP: theta = (logit r, logit none, log(rho / rho_last)), Jacobian included."""
        g = self.globals_
        t, b, d = model.T, model.B, model.D

        def unpack(theta):
            rel = torch.sigmoid(theta[: t * b]).reshape(t, b)
            none = torch.sigmoid(theta[t * b])
            rho = torch.softmax(torch.cat([theta[t * b + 1:], theta.new_zeros(1)]), 0) if d > 1 else None
            return rel, none, rho

        def log_density(theta):
            rel, none, rho = unpack(theta)
            jac = (rel.log() + torch.log1p(-rel)).sum() + none.log() + torch.log1p(-none)
            if d > 1:
                jac = jac + rho.log().sum()
            return model.log_joint(rel, none, rho, data) + jac

        parts = [torch.logit(g["reliability"]).reshape(-1), torch.logit(g["none"]).reshape(1)]
        if d > 1:
            parts.append((g["rho"][:-1] / g["rho"][-1]).log())
        theta = torch.cat(parts).detach()
        hess = torch.autograd.functional.hessian(log_density, theta)
        evals, evecs = torch.linalg.eigh(-(hess + hess.T) / 2)
        var = (evecs ** 2 * evals.clamp_min(MIN_PRECISION).reciprocal()).sum(1)  # (P,) marginal variances
        z = stats.norm.ppf(1 - (1 - self.credible_mass) / 2)
        sd = var[: t * b].sqrt().reshape(t, b).numpy()
        centre = theta[: t * b].reshape(t, b).numpy()
        lo, hi = 1 / (1 + np.exp(-(centre - z * sd))), 1 / (1 + np.exp(-(centre + z * sd)))
        out = np.full((t, self.bins, 2), np.nan)
        out[:, :b] = np.stack([lo, hi], -1)
        out[np.arange(self.bins)[None, :] >= self.n_bins_[:, None]] = np.nan
        self.reliability_interval_ = out


