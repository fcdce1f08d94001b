"""The label model's class posterior written as a Pyro model over a dense (N, T) vote grid.

The sparse E-step (``sparse_em.e_step``) is what fits and predicts; this is its reference: the same
story with the class enumerated by ``TraceEnum_ELBO`` and read with ``compute_marginals``, so the
tests can check that the fast path computes the model it claims to (small sets only: it is dense).
"""
from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.ops.indexing import Vindex


@config_enumerate
def class_model(log_prior: torch.Tensor, vote_log_lik: torch.Tensor, voted: torch.Tensor):
    """log_prior (N, K); vote_log_lik (N, T, K): each vote's tempered log-likelihood under each class;
    voted (N, T) bool. y_i ~ Categorical(prior_i); each vote adds its log-likelihood of y_i."""
    n = log_prior.shape[0]
    with pyro.plate("rows", n, dim=-1):
        y = pyro.sample("y", dist.Categorical(logits=log_prior))  # enumerated: (K, 1)
        per_row = torch.where(voted[..., None], vote_log_lik, torch.zeros(())).sum(1)  # (N, K)
        pyro.factor("votes", Vindex(per_row)[..., y])


def pyro_posterior(model, votes) -> np.ndarray:
    """(N, K) class posterior of a fitted BayesianLabelModel, computed densely with Pyro."""
    from ..votes import as_votes

    v = as_votes(votes, model.teacher_names_, model.n_classes_)
    codes = model._codes(v)
    n, t = v.n_rows, v.n_sources
    table = torch.as_tensor(model.log_lik_, dtype=torch.float64)  # (C, K)
    vote_log_lik = torch.zeros(n, t, model.n_classes_, dtype=torch.float64)
    voted = torch.zeros(n, t, dtype=torch.bool)
    weight = torch.as_tensor(model.weight_[v.source], dtype=torch.float64)[:, None]
    vote_log_lik[v.row, v.source] = table[codes] * weight
    voted[v.row, v.source] = True
    prior = np.where((v.votes_per_row() == 0)[:, None], model.pi0_[None], model.pi_[None])  # (N, K)
    log_prior = torch.as_tensor(np.log(prior), dtype=torch.float64)
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(class_model, lambda *a: None,
                                                                       log_prior, vote_log_lik, voted)
    return marginals["y"].probs.reshape(n, -1).numpy()
