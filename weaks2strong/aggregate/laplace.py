"""Uncertainty of the Bayesian aggregator's globals: a Laplace approximation at the MAP, and from it
draws of what the teachers' accuracies on the data actually were.

Each simplex-valued global (a confusion row, pi, rho, guess) is written in additive log-ratio
coordinates over the answers that teacher can give (the last one is the reference): unused answers
stay at zero mass, so no flat, data-free direction makes the Gaussian improper. The log density in
those coordinates is log p(globals, answers) + sum(log x) (the additive-logistic Jacobian is the
product of the simplex coordinates, Aitchison 1986). The Gaussian is centred on the simplex MAP
itself, with the inverse negative Hessian there as covariance; its eigenvalues are floored at one
pseudo-count, because at the MAP a rarely seen answer sits near zero mass, where the curvature
vanishes and an unfloored draw would hand it the whole row. (Moving to the mode in log-ratio
coordinates first was tried: on AG News the weakly identified difficulty mixture moved, guess by
0.5 and rho by 0.14, and the intervals no longer contained the MAP's own estimates.)

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
            clamp) -> tuple[Coordinates, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(coordinates, centre, eigenvectors, standard deviations along them) of the Gaussian
    approximation at the MAP ``values``."""
    coords = Coordinates(values, used)

    def log_density(theta):
        x, log_jac = coords.from_flat(theta)
        full = {n: x.get(n) for n in NAMES}
        return model.log_joint(full["pi"], full["rho"], full["confusion"], full["guess"], codes, mask, clamp) + log_jac

    theta = coords.to_flat(values).detach()
    hess = torch.autograd.functional.hessian(log_density, theta)  # (P, P)
    evals, evecs = torch.linalg.eigh(-(hess + hess.T) / 2)
    return coords, theta, evecs, evals.clamp_min(MIN_PRECISION).rsqrt()


def draw_globals(coords: Coordinates, mode, evecs, scale, n_draws: int, generator: torch.Generator):
    """``n_draws`` dicts of simplex globals from the Gaussian in log-ratio coordinates."""
    eps = torch.randn((n_draws, mode.shape[0]), generator=generator, dtype=mode.dtype, device=mode.device)
    thetas = mode + (eps * scale) @ evecs.T  # (S, P)
    return [coords.from_flat(theta)[0] for theta in thetas]
