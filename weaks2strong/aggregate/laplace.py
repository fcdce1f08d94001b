"""Uncertainty of the Bayesian aggregator's globals: a Laplace approximation at the MAP, and from it
draws of what the teachers' accuracies on the data actually were.

Each simplex-valued global (a confusion row, pi, rho, guess) is written in additive log-ratio
coordinates over the answers that teacher can give (the last one is the reference): unused answers
stay at zero mass, so no flat, data-free direction makes the Gaussian improper. The log density in
those coordinates is log p(globals, answers) + sum(log x) (the additive-logistic Jacobian is the
product of the simplex coordinates, Aitchison 1986). A few Newton steps move from the simplex MAP
to the mode in these coordinates, and the covariance is the inverse negative Hessian there
(eigenvalues floored, so a nearly flat direction gets a wide but proper spread).

An interval for "teacher t's accuracy on these examples" must cover two things: the globals'
uncertainty and, given the globals, which class each example really has. So each draw of the
globals is followed by a draw of every example's class from its exact posterior, and the teacher's
accuracy is counted on those classes (the posterior predictive of the in-sample accuracy).
"""
from __future__ import annotations

import torch

from .bayes_model import DawidSkeneModel

FLOOR = -40.0  # log-ratio of an answer a teacher never gives: exp(-40) is zero for every purpose
NAMES = ("pi", "rho", "confusion", "guess")
MAX_NEWTON_STEP = 1.0  # in log-ratio units
HESSIAN_EVERY = 5  # Newton steps between Hessian refreshes
MIN_PRECISION = 1.0  # at least one pseudo-count of information per direction (sd <= 1 log-ratio unit)


class Coordinates:
    """Additive log-ratio coordinates for a dict of simplex tensors with per-entry ``used`` masks."""

    def __init__(self, values: dict[str, torch.Tensor], used: dict[str, torch.Tensor]):
        self.shapes = {n: v.shape for n, v in values.items()}
        self.used = used
        self.free = {}
        for name, mask in used.items():
            last = mask.shape[-1] - 1 - torch.flip(mask.long(), [-1]).argmax(-1, keepdim=True)  # (..., 1)
            ref = torch.zeros_like(mask).scatter_(-1, last, True)  # the reference answer of each row
            self.free[name] = mask & ~ref

    def to_flat(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for name, x in values.items():
            logx = x.clamp_min(1e-300).log()
            ref = torch.where(self.free[name] | ~self.used[name], torch.zeros_like(logx), logx).sum(-1, keepdim=True)
            parts.append((logx - ref)[self.free[name]])
        return torch.cat(parts)

    def from_flat(self, theta: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(simplex values, log|Jacobian|) for one flat vector."""
        out, log_jac, start = {}, theta.new_zeros(()), 0
        for name, shape in self.shapes.items():
            free, used = self.free[name], self.used[name]
            k = int(free.sum())
            logits = torch.full(shape, FLOOR, dtype=theta.dtype, device=theta.device)
            logits = logits.masked_fill(used, 0.0).masked_scatter(free, theta[start:start + k])
            start += k
            logx = torch.log_softmax(logits, -1)
            out[name] = logx.exp()
            log_jac = log_jac + logx[used].sum()
        return out, log_jac


def laplace(model: DawidSkeneModel, values: dict[str, torch.Tensor], used: dict[str, torch.Tensor], codes, mask,
            clamp, max_steps: int = 0) -> tuple[Coordinates, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(coordinates, mode, eigenvectors, standard deviations along them) of the Gaussian approximation.

    The simplex MAP puts a rarely seen answer at (count + concentration - 1), nearly zero, where the
    log-ratio density is almost flat; in log-ratio coordinates the mode sits one pseudo-count higher,
    where the curvature is about that pseudo-count. So damped Newton steps (the Hessian refreshed
    every few steps, each step capped) walk there before the Hessian is taken."""
    coords = Coordinates(values, used)

    def log_density(theta):
        x, log_jac = coords.from_flat(theta)
        full = {n: x.get(n) for n in NAMES}
        return model.log_joint(full["pi"], full["rho"], full["confusion"], full["guess"], codes, mask, clamp) + log_jac

    def curvature(theta):
        hess = torch.autograd.functional.hessian(log_density, theta)  # (P, P)
        evals, evecs = torch.linalg.eigh(-(hess + hess.T) / 2)
        return evals.clamp_min(MIN_PRECISION), evecs

    theta = coords.to_flat(values).detach()
    for step_no in range(max_steps):
        if step_no % HESSIAN_EVERY == 0:
            evals, evecs = curvature(theta)
        theta_req = theta.clone().requires_grad_(True)
        now = log_density(theta_req)
        (grad,) = torch.autograd.grad(now, theta_req)
        step = evecs @ ((evecs.T @ grad) / evals)  # Newton ascent step on the concave-ized model
        step = step * min(1.0, MAX_NEWTON_STEP / max(float(step.abs().max()), 1e-30))
        with torch.no_grad():
            while float(step.abs().max()) > 1e-8 and log_density(theta + step) < now:
                step = step / 2
        theta = theta + step
        if float(step.abs().max()) < 1e-4:
            break
    evals, evecs = curvature(theta)
    return coords, theta.detach(), evecs, evals.rsqrt()


def draw_globals(coords: Coordinates, mode, evecs, scale, n_draws: int, generator: torch.Generator):
    """``n_draws`` dicts of simplex globals from the Gaussian in log-ratio coordinates."""
    eps = torch.randn((n_draws, mode.shape[0]), generator=generator, dtype=mode.dtype, device=mode.device)
    thetas = mode + (eps * scale) @ evecs.T  # (S, P)
    return [coords.from_flat(theta)[0] for theta in thetas]
