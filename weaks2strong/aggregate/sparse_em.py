"""Sparse EM for latent-class label models: the cost of a sweep is linear in the number of votes.

A vote is a (row, code) pair, where a code names what a source said (source x answer). The votes
form a sparse (N, C) design matrix S; given a table of log-likelihoods ``log_lik`` (C, K) of each
code under each class, the E-step is one sparse product, S @ log_lik, and the M-step's expected
counts are another, S.T @ q. Nothing here knows about teachers or priors: the label models build
the tables and read the counts (``classification/bayes_label_model.py``).

The hierarchical priors' hyperparameters are fitted by empirical Bayes on soft counts: a
beta-binomial for one-coin accuracies, a Dirichlet-multinomial for confusion rows (Minka 2000,
"Estimating a Dirichlet distribution"), so a source seen a handful of times is pulled towards the
population and one seen thousands of times is left alone.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, sparse
from scipy.special import betaln, gammaln, logsumexp


def design(row: np.ndarray, code: np.ndarray, n_rows: int, n_codes: int, weight: np.ndarray | None = None):
    """The (N, C) sparse vote matrix; ``weight`` (M,) scales each vote's log-likelihood (tempering)."""
    data = np.ones(len(row)) if weight is None else np.asarray(weight, dtype=np.float64)
    return sparse.csr_matrix((data, (row, code)), shape=(n_rows, n_codes))


def e_step(s_weighted, log_lik: np.ndarray, log_prior: np.ndarray, clamp: np.ndarray | None = None):
    """Per-row class posteriors (N, K) and the summed log evidence of the rows.

    log q_i(k) = log_prior_i(k) + sum over i's votes of w * log p(code | k); ``clamp`` (N, K) adds 0 for
    allowed classes and -inf for the others (rows with gold)."""
    logit = s_weighted @ log_lik  # (N, K)
    logit = logit + log_prior  # (N, K); log_prior is (K,) or (N, K)
    if clamp is not None:
        logit = logit + clamp
    norm = logsumexp(logit, axis=1, keepdims=True)  # (N, 1)
    return np.exp(logit - norm), float(norm.sum())


def expected_counts(s, q: np.ndarray) -> np.ndarray:
    """(C, K): for each code, the posterior mass of each class over the rows that gave it."""
    return np.asarray(s.T @ q)


# ------------------------------------------------------------------------------------------- priors


def beta_binomial_eb(right: np.ndarray, total: np.ndarray, init=(0.7, 4.0), max_kappa: float = 1e4):
    """Population (mean, concentration) of Beta-distributed accuracies, fitted to soft counts.

    Maximises sum_j log BB(right_j | total_j, mu * kappa, (1 - mu) * kappa) (the binomial coefficient
    is constant). With one source, or sources that all agree, kappa runs to ``max_kappa``: full pooling."""
    right, total = np.asarray(right, float), np.asarray(total, float)
    keep = total > 0
    right, total = right[keep], total[keep]
    if len(total) < 2:
        return float(init[0]), float(init[1])

    def nll(x):
        mu, kappa = 1.0 / (1.0 + np.exp(-x[0])), np.exp(x[1])
        a, b = mu * kappa, (1.0 - mu) * kappa
        return -float(np.sum(betaln(right + a, total - right + b) - betaln(a, b)))

    mu0 = np.clip(init[0], 0.05, 0.95)
    res = optimize.minimize(nll, x0=[np.log(mu0 / (1 - mu0)), np.log(init[1])], method="L-BFGS-B",
                            bounds=[(-6.0, 6.0), (np.log(0.5), np.log(max_kappa))])
    return float(1.0 / (1.0 + np.exp(-res.x[0]))), float(np.exp(res.x[1]))


def dirichlet_multinomial_eb(counts: np.ndarray, mean: np.ndarray, grid=None) -> float:
    """The concentration kappa of Dirichlet(kappa * mean) rows that best explains soft count rows
    ``counts`` (J, A), by a grid search over the Dirichlet-multinomial log-likelihood."""
    grid = np.geomspace(0.5, 1e3, 24) if grid is None else np.asarray(grid)
    counts = counts[counts.sum(-1) > 0]
    if len(counts) < 2:
        return float(grid[len(grid) // 2])
    mean = np.clip(mean, 1e-6, None)
    mean = mean / mean.sum()
    n = counts.sum(-1)  # (J,)
    scores = []
    for kappa in grid:
        alpha = kappa * mean  # (A,)
        ll = gammaln(kappa) - gammaln(n + kappa) + (gammaln(counts + alpha) - gammaln(alpha)).sum(-1)
        scores.append(ll.sum())
    return float(grid[int(np.argmax(scores))])
