"""The Pyro model behind ``BayesianDawidSkene``: the generative story, closed-form EM steps for the
start, the MAP guide over the globals, and the compute helpers (device, threads)."""
from __future__ import annotations

from contextlib import contextmanager

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import biject_to, constraints

# --------------------------------------------------------------------------------------------
# The Pyro model
# --------------------------------------------------------------------------------------------


class DawidSkeneModel:
    """Generative story (shapes: T teachers, K classes, B bins, A = K*B answers, D levels):

        pi ~ Dirichlet(alpha_pi)                       # (K,) class prior
        rho ~ Dirichlet(alpha_rho)                     # (D,) difficulty-level prior
        confusion[t, z] ~ Dirichlet(conf_conc[t, z])   # (T, K, A) answers on an easy example
        guess[t] ~ Dirichlet(guess_conc[t])            # (T, A) answers when the example says nothing
        for each example i:
            z_i ~ Categorical(pi); d_i ~ Categorical(rho)    # z_i observed where gold is (``clamp``)
            a_it ~ (1 - lam[d_i]) * confusion[t, z_i] + lam[d_i] * guess[t]   for the labels present
    An abstention kept as evidence is one more answer (the last), so its rate is learned per class.
    ``weight`` (T,) tempers each teacher's likelihood (a composite likelihood): teachers that err
    together share their weight instead of each counting as independent evidence (bayes.py).
    """

    def __init__(self, conf_conc, guess_conc, alpha_pi, alpha_rho, lam):
        self.conf_conc = conf_conc  # (T, K, A)
        self.guess_conc = guess_conc  # (T, A)
        self.alpha_pi = alpha_pi  # (K,)
        self.alpha_rho = alpha_rho  # (D,)
        self.lam = lam  # (D,)
        self.T, self.K, self.A = conf_conc.shape
        self.D = lam.shape[0]
        self.weight = torch.ones(self.T, dtype=conf_conc.dtype, device=conf_conc.device)  # (T,)

    def loglik(self, confusion, guess, codes, mask) -> torch.Tensor:
        """log p(answers of example i | z, d), summed over its teachers: (n, K, D)."""
        conf_flat = confusion.transpose(1, 2).reshape(self.T * self.A, self.K)  # (T*A, K)
        c = conf_flat[codes]  # (n, L, K)
        if self.D == 1:
            lp = c.log()[..., None]  # (n, L, K, 1)
        else:
            g = guess.reshape(-1)[codes]  # (n, L)
            lp = torch.log(c[..., None] * (1.0 - self.lam) + g[..., None, None] * self.lam)  # (n, L, K, D)
        lp = lp * self.weight[codes // self.A][..., None, None]  # (n, L, K, D) tempered per teacher
        # padding slots count for nothing; where() rather than a product so a -inf can never leak
        return torch.where(mask[..., None, None], lp, lp.new_zeros(())).sum(1)  # (n, K, D)

    @torch.no_grad()
    def em_step(self, values: dict, codes, mask, clamp, scale: float = 1.0) -> dict:
        """One MAP-EM sweep (Dawid & Skene 1979, with the difficulty mixture resolved per answer):
        E: q(z, d) per example and, per answer, the chance it came from confusion rather than guess;
        M: every Dirichlet-categorical global becomes (expected counts + concentration - 1), normalised.
        ``scale`` = N / len(codes) when sweeping a sample, so counts weigh against the prior as in full data."""
        pi, rho, conf, guess = values["pi"], values["rho"], values["confusion"], values["guess"]
        ll = self.loglik(conf, guess, codes, mask)  # (n, K, D)
        logq = ll + clamp[..., None] + pi.log()[:, None] + (rho.log() if self.D > 1 else 0.0)
        q = torch.softmax(logq.reshape(ll.shape[0], -1), -1).reshape(ll.shape)  # (n, K, D)
        flat = codes[mask]  # (m,) answers present
        conf_flat = conf.transpose(1, 2).reshape(self.T * self.A, self.K)  # (T*A, K)
        c = conf_flat[flat]  # (m, K)
        ex = torch.nonzero(mask)[:, 0]  # (m,) example of each answer
        qa = q[ex] * (scale * self.weight[flat // self.A])[:, None, None]  # (m, K, D) tempered counts
        if self.D > 1:
            g = guess.reshape(-1)[flat]  # (m,)
            easy = c[..., None] * (1.0 - self.lam)  # (m, K, D)
            r = easy / (easy + g[:, None, None] * self.lam)  # P(answer from confusion | z, d)
            w_conf = (qa * r).sum(-1)  # (m, K)
            w_guess = (qa * (1 - r)).sum((1, 2))  # (m,)
        else:
            w_conf, w_guess = qa[..., 0], torch.zeros_like(flat, dtype=c.dtype)
        n_conf = torch.zeros_like(conf_flat).index_add_(0, flat, w_conf)  # (T*A, K)
        n_conf = n_conf.reshape(self.T, self.A, self.K).transpose(1, 2)  # (T, K, A)
        n_guess = torch.zeros(self.T * self.A, dtype=c.dtype, device=c.device).index_add_(0, flat, w_guess)

        def mode(counts, conc):
            # floor keeps never-seen answers strictly inside the simplex (Dirichlet log-density)
            m = (counts + conc - 1.0).clamp_min(1e-6)
            return m / m.sum(-1, keepdim=True)

        out = dict(values)
        out["confusion"] = mode(n_conf, self.conf_conc)
        out["guess"] = mode(n_guess.reshape(self.T, self.A), self.guess_conc)
        out["pi"] = mode(q.sum((0, 2)) * scale, self.alpha_pi)
        if self.D > 1:
            out["rho"] = mode(q.sum((0, 1)) * scale, self.alpha_rho)
        return out

    def log_joint(self, pi, rho, confusion, guess, codes, mask, clamp) -> torch.Tensor:
        """log p(globals, answers, observed gold) with z and d summed out: what the Laplace
        approximation expands around the MAP (``laplace.py``)."""
        lp = dist.Dirichlet(self.alpha_pi).log_prob(pi) + dist.Dirichlet(self.conf_conc).log_prob(confusion).sum()
        ll = self.loglik(confusion, guess, codes, mask) + clamp[..., None] + pi.log()[:, None]  # (n, K, D)
        if self.D > 1:  # with D == 1, guess and rho never meet the data
            lp = lp + dist.Dirichlet(self.guess_conc).log_prob(guess).sum()
            lp = lp + dist.Dirichlet(self.alpha_rho).log_prob(rho)
            ll = ll + rho.log()
        return lp + torch.logsumexp(ll.reshape(ll.shape[0], -1), -1).sum()

    def class_posterior(self, pi, rho, confusion, guess, codes, mask) -> torch.Tensor:
        """p(z_i | answers, globals), d summed out: (n, K). Plain torch, for many draws of the globals."""
        ll = self.loglik(confusion, guess, codes, mask) + pi.log()[:, None]  # (n, K, D)
        if self.D > 1:
            ll = ll + rho.log()
        return torch.softmax(torch.logsumexp(ll, -1), -1)

    def model(self, codes, mask, clamp, size, subsample=None):
        pi = pyro.sample("pi", dist.Dirichlet(self.alpha_pi))  # (K,)
        rho = pyro.sample("rho", dist.Dirichlet(self.alpha_rho)) if self.D > 1 else None  # (D,)
        with pyro.plate("teachers", self.T, dim=-1):
            confusion = pyro.sample("confusion", dist.Dirichlet(self.conf_conc).to_event(1))  # (T, K, A)
            # with D == 1 guess only meets its prior: kept so one model and guide serve both modes
            guess = pyro.sample("guess", dist.Dirichlet(self.guess_conc))  # (T, A)
        # subsample given: Pyro scales this plate's log-likelihood by size / len(subsample)
        with pyro.plate("examples", size, subsample=subsample, dim=-1):
            ll = self.loglik(confusion, guess, codes, mask) + clamp[..., None]  # (n, K, D); gold pins z
            z = pyro.sample("z", dist.Categorical(pi), infer={"enumerate": "parallel"})  # (K, 1) enumerated
            if self.D > 1:
                d = pyro.sample("d", dist.Categorical(rho), infer={"enumerate": "parallel"})  # (D, 1, 1)
                pyro.factor("answers", Vindex(ll)[..., z, d])  # (D, K, n)
            else:
                pyro.factor("answers", Vindex(ll)[..., z, 0])  # (K, n)

    def make_guide(self, values: dict):
        """MAP (delta) guide over the globals; ``values`` holds unconstrained tensors being optimised."""
        simplex = biject_to(constraints.simplex)

        def guide(codes, mask, clamp, size, subsample=None):
            pyro.sample("pi", dist.Delta(simplex(values["pi"]), event_dim=1))
            if self.D > 1:
                pyro.sample("rho", dist.Delta(simplex(values["rho"]), event_dim=1))
            with pyro.plate("teachers", self.T, dim=-1):
                pyro.sample("confusion", dist.Delta(simplex(values["confusion"]), event_dim=2))
                pyro.sample("guess", dist.Delta(simplex(values["guess"]), event_dim=1))

        return guide


# --------------------------------------------------------------------------------------------
# The aggregator
# --------------------------------------------------------------------------------------------


@contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op threads (restored afterwards); None leaves them alone."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
