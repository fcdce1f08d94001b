"""A hierarchical Bayesian label model for sparse, one-sided, overlapping weak sources.

Generative story (T sources, K classes, B confidence bins per source, answers a = (class, bin))::

    mu, kappa                                 # population of one-coin accuracies (empirical Bayes)
    m_z, kappa_z                              # population confusion row of class z (empirical Bayes)
    acc[j, b] ~ Beta(mu * kappa, (1 - mu) * kappa)     one-coin source j (it only ever says one class c_j)
    theta[j, z] ~ Dirichlet(kappa_z * m_z)             any other source j: a full confusion row
    y_i ~ Categorical(pi)                              (pi0 for a row no source voted on; see below)
    confusion source:  a_ij | y_i = z  ~  theta[j, z]
    one-coin source:   p(y_i = z | j fired) = acc[j, b] if z == c_j else (1 - acc[j, b]) * pi_z / (1 - pi_c_j)

A one-coin source is parametrised by its precision, p(class | it fired), and enters the posterior
as p(y | vote) / p(y) (naive Bayes). Its likelihood of *which class it says* would be the wrong
target: a one-sided rule always says the same class, and fitting that would drive the accuracy of a
minority-class rule to zero; what identifies its precision is whom it agrees with where it overlaps.

An abstention is missing data: whether a rule fires depends on the text, not only on the class, so
a model that reads silence as evidence learns the rules' firing rates as the class balance (the
SMS and Hausa failures of the Dawid-Skene model with abstention as an answer). A one-sided source's
confusion given that it fired is degenerate (it always says its class), so it gets one accuracy,
Snorkel's and the one-coin model's parametrisation; sources that answer several classes (crowd
workers, soft teachers) get Dawid-Skene's full confusion. Every source is partially pooled:
a rule that fired twice is pulled to the population accuracy, one that fired a thousand times is not.

Class prior: the expected classes of the rows that got a vote (the EM fixed point when uncovered
rows carry no information), or, with ``class_balance``, fixed: the gold rows' balance ("gold") or
one the user knows (Snorkel's ``class_balance``). Where the votes barely carry the class, EM cannot
identify the balance from them, and its estimate follows the teachers' bias instead.
Rows that got no vote get ``pi0``: with gold, the class balance of the
gold rows that got no vote (smoothed towards pi), else pi itself: never a confident class.

Overlap: rules that fire together beyond what the class explains (the class-conditional correlation
of their firing, ``dependence``) share their likelihood weight, so a copied rule is not counted twice.

Inference: exact posteriors of y given the globals (enumeration over K), MAP-EM for the globals with
the hyperparameters re-fitted every sweep (``sparse_em.py``). Every sweep is linear in the votes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..answers import apply_bins, bin_edges
from ..base import Aggregate, AggregatorError, LabelModel, check_gold, confidence_from_posterior
from ..sparse_em import beta_binomial_eb, design, dirichlet_multinomial_eb, e_step, expected_counts
from ..votes import Votes, as_votes
from .bayes_dependence import firing_dependence, tempering_weights
from .bayes_report import teacher_report
from .bayes_selection import MIN_GOLD_TO_SELECT, SELECT_GRID, select_on_gold  # noqa: F401 (SELECT_GRID re-exported)
from .majority import MajorityVote

SOURCE_MODELS = ("auto", "one_coin", "confusion")
UNCOVERED_PRIOR_STRENGTH = 10.0  # pseudo-counts of pi in pi0 (gold rows with no vote)
RULE_SET_SHARE = 0.25  # share of votes cast by one-sided sources above which a set is a rule set


@dataclass(eq=False)
class BayesianLabelModel(LabelModel):
    """Hierarchical Bayesian label model (see the module docstring for the story).

    ``source_model``: "auto" (one-coin for sources that only ever answer one class, a confusion
    matrix for the others), "one_coin" or "confusion" for all. ``soft_bins``: confidence bins of a
    soft answer (quantiles of each source's max probability; hard votes collapse to one bin).
    ``dependence``: "auto" tempers rules whose class-conditional firing correlation exceeds
    ``dependence_threshold``; "ignore" trusts conditional independence. ``class_prior``: Dirichlet
    pseudo-counts on pi. ``max_iter``/``tol``: EM stops when the per-row log evidence moves < tol.
    """

    supports_gold: ClassVar[bool] = True

    source_model: str = "auto"
    soft_bins: int = 3
    dependence: str = "auto"
    dependence_threshold: float = 0.3
    min_co_fired: int = 5
    class_prior: float = 1.0
    # kappa of the one-coin population, in pseudo-votes: "auto" = empirical Bayes, floored at
    # min_pooling (chosen on the valid splits: self-confirming EM counts make the bare EB estimate too
    # weak, 0.7-2 pseudo-votes, and a rule that confirms itself on its single-vote rows runs away)
    pooling_strength: float | str = "auto"
    min_pooling: float = 30.0
    # pseudo-counts pulling a one-coin rule's wrong classes to the prior's shape; inf: the prior's shape
    # (without gold, learning it from conflicts cost 3 points on trec's valid split)
    error_shape: float = float("inf")
    # with gold: the variants (pooling, error shape; source model and bins where they matter) are fitted
    # without it and scored on it (bayes_selection.py); the defaults stay unless beaten by two paired SEs
    select: str = "auto"
    # the power of the votes' likelihood in the posterior, in EM and in predict (1: the model's own; 0:
    # the class prior); with gold and select=auto, chosen on the gold rows (bayes_selection.py)
    evidence_weight: float = 1.0
    # "em": the class prior fitted with the globals; "gold": the gold rows' balance, fixed; or the
    # class probabilities themselves. With gold and select=auto, EM's or the gold's, chosen on the
    # gold rows (bayes_selection.py)
    class_balance: str | tuple | list = "em"
    max_iter: int = 200
    tol: float = 1e-6
    seed: int = 0  # EM is deterministic; kept so configs and sweeps can pass one
    progress: bool = False

    def __post_init__(self):
        if self.source_model not in SOURCE_MODELS:
            raise AggregatorError(f"source_model must be one of {', '.join(SOURCE_MODELS)}, got {self.source_model!r}")
        if self.dependence not in ("auto", "ignore"):
            raise AggregatorError(f"dependence must be 'auto' or 'ignore', got {self.dependence!r}")
        if self.select not in ("auto", "none"):
            raise AggregatorError(f"select must be 'auto' (choose on the gold rows) or 'none', got {self.select!r}")
        if self.soft_bins < 1:
            raise AggregatorError(f"soft_bins must be >= 1, got {self.soft_bins}")
        if not 0.0 <= self.evidence_weight <= 1.0:
            raise AggregatorError(f"evidence_weight must be in [0, 1], got {self.evidence_weight}")
        if isinstance(self.class_balance, str):
            if self.class_balance not in ("em", "gold"):
                raise AggregatorError("class_balance must be 'em', 'gold' or the class probabilities, "
                                      f"got {self.class_balance!r}")
        else:
            balance = np.asarray(self.class_balance, float)
            if balance.ndim != 1 or (balance <= 0).any() or not np.isclose(balance.sum(), 1.0):
                raise AggregatorError(f"class_balance must be positive probabilities summing to 1, "
                                      f"got {list(self.class_balance)}")

    # ------------------------------------------------------------------ public face

    def fit(self, votes, teacher_names=None, gold=None) -> BayesianLabelModel:
        started = time.perf_counter()
        v = as_votes(votes, teacher_names)
        gold = check_gold(gold, v.n_rows, v.n_classes)
        self.selection_, self.evidence_selection_ = [], []
        if gold is not None and self.select == "auto" and (gold >= 0).sum() >= MIN_GOLD_TO_SELECT:
            knobs, self.selection_, self.evidence_selection_ = select_on_gold(self, v, teacher_names, gold)
            for name, value in knobs.items():
                setattr(self, name, value)
        self.n_classes_, self.n_sources_ = v.n_classes, v.n_sources
        self.fixed_pi_ = self._fixed_class_balance(v.n_classes, gold)
        self.teacher_names_ = list(teacher_names) if teacher_names is not None else v.names
        self.edges_ = bin_edges(v.source, v.top, v.n_sources, self.soft_bins)
        self.stride_ = max(1, max((len(e) + 1 for e in self.edges_), default=1))
        self.one_coin_ = self._one_coin_sources(v)
        self.weight_ = np.ones(v.n_sources)
        codes = self._codes(v)
        q = self._initial_posterior(v, gold)
        q = self._em(v, codes, q, gold)
        self.dependence_ = None
        if self.dependence == "auto" and self.one_coin_.sum() >= 2:
            self.dependence_ = firing_dependence(v, q, self.one_coin_, self.min_co_fired)
            weight = tempering_weights(self.dependence_, self.dependence_threshold)
            if not np.allclose(weight, 1.0):
                self.weight_ = weight
                q = self._em(v, codes, q, gold)
        self._fit_uncovered_prior(v, gold)
        self.report_ = teacher_report(self, v, codes, q)
        self.fit_seconds_ = time.perf_counter() - started
        coin = bool(self.one_coin_.any())  # a crowd has no one-coin population to report
        self.chosen_ = {"one_coin_sources": int(self.one_coin_.sum()),
                        "pooled_accuracy": round(self.mu_, 3) if coin else None,
                        "pooling_strength": round(self.kappa_, 2) if coin else None,
                        "tempered_sources": int((self.weight_ < 1).sum()), "em_sweeps": self.n_iter_,
                        "min_pooling": self.min_pooling, "error_shape": self.error_shape,
                        "source_model": self.source_model, "soft_bins": self.soft_bins,
                        "evidence_weight": self.evidence_weight,
                        "class_balance": self.class_balance if isinstance(self.class_balance, str)
                        else [round(float(p), 4) for p in self.class_balance]}
        return self

    def predict(self, votes, gold=None) -> Aggregate:
        if not hasattr(self, "log_lik_"):
            raise AggregatorError("BayesianLabelModel: call fit before predict")
        v = as_votes(votes, self.teacher_names_, self.n_classes_)
        if (v.n_sources, v.n_classes) != (self.n_sources_, self.n_classes_):
            raise AggregatorError(f"expected {self.n_sources_} sources x {self.n_classes_} classes as fitted, "
                                  f"got {v.n_sources} x {v.n_classes}")
        gold = check_gold(gold, v.n_rows, v.n_classes)
        q, _ = self._posterior(v, self._codes(v), gold, uncovered_prior=True, evidence_weight=self.evidence_weight)
        return Aggregate(posterior=q, confidence=confidence_from_posterior(q), difficulty=None,
                         teachers=self.report_)

    @property
    def teachers_(self) -> dict:
        return self.report_

    # ------------------------------------------------------------------ the model's pieces

    def _one_coin_sources(self, v: Votes) -> np.ndarray:
        """(T,) bool. "auto": where one-sided sources cast a quarter of the votes (a rule set), every source
        is one-coin; else (a crowd) every source keeps a pooled confusion matrix, since a worker who
        answered one class has simply answered little. One kind per set: on a synthetic set with half
        the rules one-sided, mixing the kinds let the class prior run away (0.60 against one-coin
        everywhere's 0.73 and majority vote's 0.72, ``benchmarks/label_model_scale.py --one-sided 0.5``)."""
        if self.source_model != "auto":
            return np.full(v.n_sources, self.source_model == "one_coin")
        said = np.zeros((v.n_sources, v.n_classes), dtype=bool)
        said[v.source, v.label] = True
        one_sided = said.sum(1) <= 1  # (T,)
        # crowds in ../shared: 0.2-12% of votes from one-sided workers; rule sets: most or all
        rule_set = one_sided[v.source].mean() >= RULE_SET_SHARE if v.n_votes else True
        return np.full(v.n_sources, bool(rule_set))

    def _fixed_class_balance(self, k: int, gold) -> np.ndarray | None:
        """pi held fixed through EM, or None where EM fits it."""
        if isinstance(self.class_balance, str):
            if self.class_balance == "em":
                return None
            known = gold[gold >= 0] if gold is not None else np.array([], int)
            if len(known) == 0:
                raise AggregatorError("class_balance='gold' needs gold rows (anchor=val), and none were given")
            counts = np.bincount(known, minlength=k) + self.class_prior
            return counts / counts.sum()
        balance = np.asarray(self.class_balance, float)
        if len(balance) != k:
            raise AggregatorError(f"class_balance has {len(balance)} probabilities for {k} classes")
        return balance / balance.sum()

    def _codes(self, v: Votes) -> np.ndarray:
        answer = v.label * self.stride_ + apply_bins(v.source, v.top, self.edges_)  # (M,)
        return v.source * (self.n_classes_ * self.stride_) + answer  # (M,) index into (T * A)

    def _initial_posterior(self, v: Votes, gold) -> np.ndarray:
        """Majority vote shares (uniform where no vote): the start that pins the class labelling."""
        q = MajorityVote().predict_proba(v)
        if gold is not None:
            q[gold >= 0] = np.eye(v.n_classes)[gold[gold >= 0]]
        return q

    def _clamp(self, n: int, gold) -> np.ndarray | None:
        if gold is None or not (gold >= 0).any():
            return None
        clamp = np.zeros((n, self.n_classes_))
        known = gold >= 0
        clamp[known] = -np.inf
        clamp[known, gold[known]] = 0.0
        return clamp

    def _m_step(self, v: Votes, counts: np.ndarray, q: np.ndarray, covered: np.ndarray) -> None:
        """Globals from expected counts ``counts`` (T, A, K), hyperparameters by empirical Bayes."""
        t, k, b = self.n_sources_, self.n_classes_, self.stride_
        if self.fixed_pi_ is not None:
            self.pi_ = self.fixed_pi_
        else:
            self.pi_ = q[covered].sum(0) + self.class_prior
            self.pi_ /= self.pi_.sum()
        by_class = counts.reshape(t, k, b, k)  # (T, answered class, bin, true class)
        right = np.einsum("tcbc->tb", by_class)  # (T, B) mass where the answer was the true class
        total = by_class.sum((1, 3))  # (T, B)
        one = self.one_coin_
        self.mu_, self.kappa_ = beta_binomial_eb(right[one].ravel(), total[one].ravel(),
                                                 init=(getattr(self, "mu_", 0.7), getattr(self, "kappa_", 4.0)))
        self.kappa_ = max(self.kappa_, self.min_pooling) if self.pooling_strength == "auto" \
            else float(self.pooling_strength)
        self.mu_ = float(np.clip(self.mu_, self._min_precision(), 0.999))  # above chance: keeps the labelling
        acc = (right + self.mu_ * self.kappa_) / (total + self.kappa_)  # (T, B) posterior mean precision
        # a one-coin vote enters as its posterior over y divided by the prior (naive Bayes:
        # p(vote | y) is proportional to p(y | vote) / p(y)); its errors fall on the other classes in
        # the prior's proportions, or (finite error_shape) as its conflicts say, shrunk to them
        log_pi = np.log(self.pi_)  # (K,)
        wrong_class = (1 - np.eye(k))[None, :, None, :]  # (1, c, 1, z)
        shape = np.broadcast_to(self.pi_[None, None, None, :] * wrong_class, (t, k, b, k)).copy()  # (T, c, B, z)
        if np.isfinite(self.error_shape):  # counts on the wrong classes, shrunk to the prior's shape
            shape = by_class * wrong_class + self.error_shape * shape / shape.sum(-1, keepdims=True)
        shape /= shape.sum(-1, keepdims=True)
        err = np.log1p(-acc)[:, None, :, None] + np.log(np.clip(shape, 1e-300, None))  # (T, c, B, z)
        coin = np.broadcast_to(err, (t, k, b, k)).copy()
        idx = np.arange(k)
        coin[:, idx, :, idx] = np.log(acc)[None]  # answer class == true class
        coin -= log_pi[None, None, None, :]
        log_lik = coin.reshape(t, k * b, k)
        if (~one).any():
            rows = counts[~one].transpose(0, 2, 1)  # (T', z, A) confusion rows over answers
            mean = rows.sum(0) + 1.0 / (k * b)  # (z, A) pooled confusion
            mean /= mean.sum(-1, keepdims=True)
            self.row_kappa_ = np.array([dirichlet_multinomial_eb(rows[:, z], mean[z]) for z in range(k)])
            theta = rows + self.row_kappa_[None, :, None] * mean[None]  # (T', z, A) posterior mean
            theta /= theta.sum(-1, keepdims=True)
            log_lik[~one] = np.log(theta).transpose(0, 2, 1)
        self.log_lik_ = log_lik.reshape(t * k * b, k)  # (C, K)

    def _min_precision(self) -> float:
        """The population precision's floor: a typical source's vote, alone, beats the class prior
        (the premise of weak supervision, and of majority vote). Without it, on sets where rules only
        ever conflict (Hausa: one rule per class) EM drifts every precision to chance."""
        pi = self.pi_
        k = len(pi)
        others = np.where(np.eye(k, dtype=bool), -np.inf, pi[None, :])  # (c, y) prior of the other classes
        need = others.max(1) / (1 - pi + others.max(1))  # (c,) precision at which c ties the best other class
        return float(min(need.max() + 0.02, 0.95))

    def _tempered_design(self, v: Votes, codes: np.ndarray):
        """The (N, C) vote matrix with each vote scaled by its source's likelihood weight."""
        n_codes = self.n_sources_ * self.n_classes_ * self.stride_
        return design(v.row, codes, v.n_rows, n_codes, self.weight_[v.source])

    def _posterior(self, v: Votes, codes: np.ndarray, gold, uncovered_prior: bool, evidence_weight: float = 1.0):
        log_prior = np.log(self.pi_)[None, :].repeat(v.n_rows, 0)  # (N, K)
        if uncovered_prior:
            log_prior[v.votes_per_row() == 0] = np.log(self.pi0_)
        return e_step(self._tempered_design(v, codes), evidence_weight * self.log_lik_, log_prior,
                      self._clamp(v.n_rows, gold))

    def _em(self, v: Votes, codes: np.ndarray, q: np.ndarray, gold) -> np.ndarray:
        from tqdm.auto import tqdm

        n_codes = self.n_sources_ * self.n_classes_ * self.stride_
        s = design(v.row, codes, v.n_rows, n_codes)  # counts use every vote once, tempered or not
        s_w, clamp = self._tempered_design(v, codes), self._clamp(v.n_rows, gold)  # fixed within the run
        covered = v.votes_per_row() > 0
        if gold is not None:
            covered = covered | (gold >= 0)
        before = -np.inf
        sweep = 0
        bar = tqdm(total=self.max_iter, disable=not self.progress, desc="BayesianLabelModel EM", leave=False)
        for sweep in range(self.max_iter):  # noqa: B007 (the count is kept)
            counts = expected_counts(s, q).reshape(self.n_sources_, self.n_classes_ * self.stride_, self.n_classes_)
            self._m_step(v, counts, q, covered)
            # every row gets pi while fitting; the votes' likelihood at its power (evidence_weight)
            q, evidence = e_step(s_w, self.evidence_weight * self.log_lik_, np.log(self.pi_), clamp)
            evidence /= v.n_rows
            bar.update(1)
            if abs(evidence - before) < self.tol:
                break
            before = evidence
        bar.close()
        self.n_iter_ = sweep + 1
        return q

    def _fit_uncovered_prior(self, v: Votes, gold) -> None:
        """pi0, the prior of a row no source voted on: the gold rows' own balance where they exist."""
        self.pi0_ = self.pi_.copy()
        if gold is None:
            return
        silent = (v.votes_per_row() == 0) & (gold >= 0)
        counts = np.bincount(gold[silent], minlength=self.n_classes_)
        self.pi0_ = (counts + UNCOVERED_PRIOR_STRENGTH * self.pi_) / (counts.sum() + UNCOVERED_PRIOR_STRENGTH)
