"""A Bayesian Dawid-Skene aggregator with per-example difficulty, written in Pyro.

References: A. P. Dawid and A. M. Skene (1979), "Maximum likelihood estimation of observer
error-rates using the EM algorithm", Applied Statistics 28(1); J. Whitehill, P. Ruvolo, T. Wu,
J. Bergsma and J. Movellan (2009), "Whose vote should count more: optimal integration of labels
from labelers of unknown expertise" (GLAD), NeurIPS. The class model is Dawid-Skene's; the notion
that an example can be hard for everyone at once is GLAD's, here as a discrete mixture towards each
teacher's "chance" answer so that it stays exactly enumerable.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import pyro
import torch
from pyro.infer import TraceEnum_ELBO
from scipy import stats
from torch.distributions import biject_to, constraints

from .answers import (
    Answers,
    Long,
    answer_codes,
    bin_edges,
    gold_clamp,
    long_from_probs,
    long_from_table,
    pad_answers,
)
from .base import Aggregate, AggregatorError, LabelModel, check_probs, confidence_from_posterior
from .bayes_model import DawidSkeneModel, resolve_device, torch_threads
from .dependence import MIN_SHARED_ROWS, dependence_given_class, excess_agreement, likelihood_weights
from .io.crowd import table_to_long

# what ``select="val"`` chooses among: the calibration bins, the difficulty mixture and how strongly
# the confusions are pulled towards the diagonal (weak: the crowd sets' choice; strong: few labels)
SELECT_GRID = [dict(soft_bins=s, difficulty=d, difficulty_levels=4, max_difficulty=0.9, prior_strength=p)
               for s in (3, 1) for d in (True, False) for p in (0.25, 4.0)]
# class_balance="uniform": pi pinned at 1/K by this many pseudo-counts (Snorkel's label model assumes a
# uniform class balance unless told otherwise; with one keyword rule per class, as in Hausa, a learned
# prior simply becomes each rule's firing rate)
PINNED = 1e6
MIN_GOLD = 50  # fewer gold rows: no dependence weights (unless correlated='downweight'), no gold correction
MAX_LAPLACE_ROWS = 1 << 17  # 400 class draws of every example; a bound, not measured at 10^6 rows
MAX_LAPLACE_PARAMS = 1000  # dog set, ~1,600 globals: a fit took 25.6 s with Laplace, 1.9 s without


@dataclass(eq=False)
class BayesianDawidSkene(LabelModel):
    """Bayesian Dawid-Skene (1979) with soft teacher outputs and a per-example difficulty.

    **Soft outputs.** Each teacher's probability row becomes a discrete *answer* a = (argmax class,
    confidence bin): ``soft_bins`` bins per teacher whose edges are the quantiles of that teacher's
    own max-probability, so A = K * soft_bins answers. Quantiles rather than fixed cut points mean
    an uncalibrated teacher whose outputs all sit in [0.55, 0.7] still gets informative bins; tied
    values (hard 0/1 votes, a crowd table) collapse to fewer bins, down to one. Because each
    teacher's confusion row is over these answers, the model learns each teacher's calibration --
    how often its confident and its hesitant answers are right, i.e. who errs how. ``soft_bins=1``
    and ``difficulty=False`` is classic Bayesian Dawid-Skene on hard votes.

    **Model** (Pyro; ``confusion`` rows are over answers, ``lam = linspace(0, max_difficulty, D)``)::

        pi ~ Dirichlet(1 + class_prior / K)                     # class prior
        rho ~ Dirichlet(1 + difficulty_prior / D)               # difficulty-level prior
        confusion[t, z] ~ Dirichlet(1 + prior_strength * w_z)   # w_z: prior_diag on the answers of class z
        guess[t] ~ Dirichlet(1 + guess_prior * uniform)         # what t says when the example tells it nothing
        z_i ~ Categorical(pi),  d_i ~ Categorical(rho)
        a_it ~ (1 - lam[d_i]) * confusion[t, z_i] + lam[d_i] * guess[t]      (abstentions: no factor at all)

    The per-example difficulty is GLAD's idea (Whitehill et al. 2009) made discrete: an example that
    all teachers answer hesitantly is better explained by a large lam, and then its answers say
    little about z, so its class posterior is pulled towards pi -- lower confidence even when the
    argmaxes agree. ``difficulty_i`` is the posterior mean of lam[d_i]. ``difficulty=False`` is D=1,
    lam=0.

    **Inference.** z and d are enumerated exactly (``TraceEnum_ELBO``; per-example marginals read
    with ``compute_marginals``), so given the globals every per-example posterior is exact. The
    globals get a MAP (delta) guide fitted by SVI with Adam -- full batch, or minibatches of
    ``batch_size`` examples (an epoch-wise permutation handed to the examples plate, which scales
    the likelihood by N / batch) -- stopping on an ELBO plateau, after which the step is cut once
    (``lr_decays``) to settle. Start: confusions from soft-majority-vote counts, then up to
    ``init_em`` closed-form MAP-EM sweeps of the same model on at most ``init_em_examples``
    examples, so SVI starts near the mode and needs tens of steps rather than hundreds
    (``init_em=0``: SVI alone; it reaches the same mode, see the tests). ``method="nuts"`` samples
    the globals with NUTS instead (z, d still enumerated; small problems only, minutes).

    **Teacher summaries** (``teachers_`` and ``Aggregate.teachers``, from the training posterior):
    ``accuracy`` (expected share of its labels whose argmax is the true class), ``confusion``
    (K x K, true class x answered class, marginal over difficulty and collapsed over confidence
    bins), ``confusion_low``/``confusion_high`` and ``accuracy_low``/``accuracy_high`` (central
    ``credible_mass`` intervals), ``confusion_easy`` (the MAP confusion at lam = 0), ``guess``,
    ``bin_edges``, ``bin_accuracy``/``bin_share`` (its calibration), ``abstain_given_class``,
    ``likelihood_weight`` and ``n_labels``, over the rows without gold. Intervals (``intervals``):
    "laplace" draws the globals from a Laplace approximation at the MAP and then every example's
    class from its posterior, so the accuracy interval is the posterior predictive of the teacher's
    in-sample accuracy (``laplace.py``); "counts" is the older Dirichlet(prior + expected counts)
    approximation, too narrow when the marginals are uncertain; "auto" is laplace up to
    MAX_LAPLACE_PARAMS globals. With enough gold, each estimate is then corrected by the model's own
    error on the gold rows (``_correct_with_gold``).

    **Away from home.** ``fit(..., gold=)`` observes the classes of some rows (semi-supervised
    Dawid-Skene); ``abstention="evidence"`` makes an abstention an answer with a learned rate per
    class, so one-sided rules are identifiable (``silent_teachers`` lists those whose silence means
    nothing); ``correlated`` tempers the likelihood of teachers whose answers depend on each other
    beyond the class (``dependence.py``); ``select="val"`` picks soft_bins, difficulty and
    prior_strength by cross-validation on the gold rows; a posterior that puts every example in one
    class raises a warning.

    **Label switching.** A mixture is symmetric under permuting classes; the diagonal-favouring
    prior and the majority-vote start pin the labelling, and after fitting a mean teacher accuracy
    at or below chance (1/K) raises a warning -- that fit is most likely a permuted solution.

    **Parameters** are declared as fields (crowd-kit's style), so a config or a sweep sees them all.
    ``prior_strength``: pseudo-counts per confusion row, ``prior_diag`` of them
    on the row's own class (weak by default: on the crowd sets a strong prior cost accuracy);
    ``guess_prior``: pseudo-counts pulling ``guess`` towards uniform (strong by default, so a hard
    example's answers read as chance, as in GLAD); ``class_prior``/``difficulty_prior``: pseudo-counts
    on pi and rho; ``class_balance="uniform"`` pins pi at 1/K instead of learning it.
    ``batch_size``: "auto" = full batch up to 2^16 examples, else 2^14. ``threads``:
    "auto" runs small problems on one torch thread (see ``_threads_for``), an int fixes it, None
    leaves torch alone. ``precision``: "float32" (fast) or "float64". ``seed`` makes fits
    reproducible (``pyro.set_rng_seed``); ``device`` "auto" is CUDA when available.
    """

    supports_gold: ClassVar[bool] = True  # gold rows enter as observed classes (fit(..., gold=))

    # the model (see the class docstring)
    soft_bins: int = 3
    abstention: str = "evidence"
    silent_teachers: list | None = None
    correlated: str = "auto"
    # choose soft_bins, difficulty and prior_strength by cross-validation on the gold rows
    select: str | None = None
    select_folds: int = 3
    dependence_threshold: float = 0.3
    difficulty: bool = True
    difficulty_levels: int = 4
    max_difficulty: float = 0.9
    # priors, in pseudo-counts
    prior_strength: float = 0.25
    prior_diag: float = 0.8
    guess_prior: float = 20.0
    class_prior: float = 2.0
    class_balance: str = "learn"
    difficulty_prior: float = 2.0
    # inference
    init_em: int = 50
    init_em_examples: int = 1 << 14
    steps: int = 300
    lr: float = 0.05
    tol: float = 1e-4
    lr_decays: int = 1
    batch_size: int | str | None = "auto"
    method: str = "svi"
    nuts_samples: int = 200
    nuts_warmup: int = 200
    # how it runs and reports
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    credible_mass: float = 0.95
    intervals: str = "auto"
    interval_draws: int = 400
    threads: int | str | None = "auto"
    precision: str = "float32"

    def __post_init__(self):
        if self.soft_bins < 1:
            raise AggregatorError(f"soft_bins must be >= 1, got {self.soft_bins}")
        if self.difficulty and (self.difficulty_levels < 2 or not 0 < self.max_difficulty < 1):
            raise AggregatorError("difficulty needs difficulty_levels >= 2 and 0 < max_difficulty < 1")
        if not 0 < self.prior_diag < 1:
            raise AggregatorError(f"prior_diag must lie in (0, 1), got {self.prior_diag}")
        if self.method not in ("svi", "nuts"):
            raise AggregatorError(f"method must be 'svi' or 'nuts', got {self.method!r}")
        if self.abstention not in ("evidence", "missing"):
            raise AggregatorError(f"abstention must be 'evidence' or 'missing', got {self.abstention!r}")
        if self.correlated not in ("auto", "downweight", "ignore"):
            raise AggregatorError(f"correlated must be 'auto', 'downweight' or 'ignore', got {self.correlated!r}")
        if self.class_balance not in ("learn", "uniform"):
            raise AggregatorError(f"class_balance must be 'learn' or 'uniform', got {self.class_balance!r}")
        if self.select not in (None, "val"):
            raise AggregatorError(f"select must be null or 'val' (cross-validate on gold), got {self.select!r}")
        if self.intervals not in ("auto", "laplace", "counts"):
            raise AggregatorError(f"intervals must be 'auto', 'laplace' or 'counts', got {self.intervals!r}")
        if self.precision not in ("float32", "float64"):
            raise AggregatorError(f"precision must be 'float32' or 'float64', got {self.precision!r}")
        if not self.difficulty:  # D = 1, lam = 0: plain Dawid-Skene
            self.difficulty_levels, self.max_difficulty = 1, 0.0

    # ---------------------------------------------------------------- public face: arrays

    def fit(self, probs: np.ndarray, teacher_names: list[str] | None = None,
            gold: np.ndarray | None = None) -> BayesianDawidSkene:
        """Fit the globals on an (N, T, K) array of teacher probabilities (NaN rows = abstain).

        ``gold`` (N,) int, -1 where unknown: the known classes enter as observed z (semi-supervised
        Dawid-Skene), so a small labelled set pins the confusions, the calibration and the class prior."""
        probs = self._check(probs, teacher_names)
        n, t, k = probs.shape
        names = list(teacher_names) if teacher_names is not None else [f"teacher {j}" for j in range(t)]
        gold = self._check_gold(gold, n, k)
        if self.select == "val":
            self._select_on_gold(probs, names, gold)
        self.classes_ = list(range(k))
        self.informative_ = self._informative(names)
        self._fit_long(long_from_probs(probs, self.informative_), names, k, gold=gold)
        return self

    def predict(self, probs: np.ndarray, gold: np.ndarray | None = None) -> Aggregate:
        """Exact per-example posteriors for (possibly new) examples under the fitted globals; rows
        with ``gold`` >= 0 are clamped to it (the semi-supervised posterior)."""
        self._require_fit()
        probs = self._check(probs, self.teacher_names_, fitting=False)
        if probs.shape[1:] != (len(self.teacher_names_), self.n_classes_):
            raise AggregatorError(f"expected {len(self.teacher_names_)} teachers x {self.n_classes_} classes "
                                  f"as fitted, got {probs.shape[1:]}")
        gold = self._check_gold(gold, probs.shape[0], self.n_classes_)
        return self._predict_long(long_from_probs(probs, self.informative_), gold)

    def predict_proba(self, probs: np.ndarray) -> np.ndarray:
        return self.predict(probs).posterior

    def fit_predict(self, probs: np.ndarray, teacher_names: list[str] | None = None,
                    gold: np.ndarray | None = None) -> Aggregate:
        """Fit, then the posteriors of every row as if unlabelled (gold rows are scored, not copied)."""
        return self.fit(probs, teacher_names, gold).predict(probs)

    def _select_on_gold(self, probs: np.ndarray, names: list[str], gold: np.ndarray | None) -> None:
        """Set the knobs of SELECT_GRID that give the gold rows the highest held-out log-probability.

        K-fold over the gold rows: each fold's gold is hidden, the model is fitted with the rest as
        anchors, and the hidden rows are scored (mean log posterior of their true class). Ties go to
        the earlier setting. The table is kept in ``selection_``."""
        if gold is None or (gold >= 0).sum() < 2 * self.select_folds:
            raise AggregatorError("select='val' needs gold rows to cross-validate on (aggregator.anchor=val, "
                                  f"at least {2 * self.select_folds})")
        rows = np.nonzero(gold >= 0)[0]
        folds = np.array_split(np.random.default_rng(self.seed).permutation(rows), self.select_folds)
        table = []
        for knobs in SELECT_GRID:
            trial = replace(self, select=None, intervals="counts", progress=False, **knobs)
            scores = []
            for held in folds:
                hidden = gold.copy()
                hidden[held] = -1
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    post = trial.fit(probs, names, hidden).predict(probs[held]).posterior
                scores.append(float(np.log(np.clip(post[np.arange(len(held)), gold[held]], 1e-12, 1)).mean()))
            table.append({**knobs, "val_log_lik": float(np.mean(scores))})
        best = max(range(len(table)), key=lambda i: (table[i]["val_log_lik"], -i))
        for name, value in SELECT_GRID[best].items():
            setattr(self, name, value)
        self.__post_init__()
        self.selection_ = {"chosen": SELECT_GRID[best], "by": "held-out log-likelihood of the val gold",
                           "folds": self.select_folds, "table": table}

    def _check_gold(self, gold, n: int, k: int) -> np.ndarray | None:
        if gold is None:
            return None
        gold = np.asarray(gold)
        if gold.shape != (n,):
            raise AggregatorError(f"gold must have one entry per example ({n}), got shape {gold.shape}")
        if not np.issubdtype(gold.dtype, np.integer):
            raise AggregatorError(f"gold must hold integer class indices (-1 = unknown), got dtype {gold.dtype}")
        bad = (gold < -1) | (gold >= k)
        if bad.any():
            raise AggregatorError(f"gold at example {int(np.argmax(bad))} is {int(gold[bad][0])}, "
                                  f"not a class in 0..{k - 1} or -1 (unknown)")
        return gold.astype(np.int64) if (gold >= 0).any() else None

    def _informative(self, names: list[str]) -> np.ndarray:
        """(T,) bool: whose abstentions are answers (``abstention="evidence"``, minus ``silent_teachers``)."""
        silent = set(self.silent_teachers or [])
        unknown = silent - set(names)
        if unknown:
            raise AggregatorError(f"silent_teachers names {sorted(unknown)[0]!r}, which is not a teacher "
                                  f"({', '.join(names)})")
        if self.abstention == "missing":
            return np.zeros(len(names), dtype=bool)
        return np.array([name not in silent for name in names])

    # ---------------------------------------------------------------- public face: crowd tables

    def fit_table(self, df: pd.DataFrame, task: str = "task", worker: str = "worker", label: str = "label",
                  classes: list | None = None) -> BayesianDawidSkene:
        """crowd-kit style: fit on a long table of hard labels, one row per (task, worker, label)."""
        labels = table_to_long(df, task, worker, label, classes=classes)
        if len(labels.classes) < 2:
            raise AggregatorError(f"need at least two classes, got {len(labels.classes)}")
        if len(labels.workers) < 2:
            raise AggregatorError(f"needs at least two teachers (workers); the table has {len(labels.workers)}")
        self.classes_ = labels.classes
        # a crowd worker who was not shown a task says nothing about it: no abstention evidence
        self.informative_ = np.zeros(len(labels.workers), dtype=bool)
        self._fit_long(long_from_table(labels), [str(w) for w in labels.workers], len(labels.classes),
                       worker_ids=labels.workers)
        return self

    def predict_proba_table(self, df: pd.DataFrame, task: str = "task", worker: str = "worker",
                            label: str = "label") -> pd.DataFrame:
        """Posterior class probabilities, one row per task (index) and one column per class.

        Labels from workers unseen at fit time carry no learned confusion and are ignored (a task
        with only such labels gets the class prior)."""
        return self.predict_table(df, task, worker, label)[0]

    def predict_table(self, df: pd.DataFrame, task: str = "task", worker: str = "worker", label: str = "label"):
        """(posterior DataFrame indexed by task, Aggregate) for a long label table."""
        self._require_fit()
        if getattr(self, "worker_ids_", None) is None:
            raise AggregatorError("this model was fitted on an array, not a table; use predict()")
        labels = table_to_long(df, task, worker, label, classes=self.classes_, workers=self.worker_ids_)
        unknown = int((labels.worker < 0).sum())
        if unknown:
            warnings.warn(f"{unknown} labels from workers not seen at fit time were ignored", stacklevel=2)
        agg = self._predict_long(long_from_table(labels))
        frame = pd.DataFrame(agg.posterior, index=pd.Index(labels.tasks, name=task), columns=self.classes_)
        return frame, agg

    def fit_predict_table(self, df: pd.DataFrame, task: str = "task", worker: str = "worker", label: str = "label"):
        return self.fit_table(df, task, worker, label).predict_table(df, task, worker, label)

    # ---------------------------------------------------------------- fitting

    def _check(self, probs, names, fitting: bool = True) -> np.ndarray:
        if not fitting:
            # on new examples a teacher may sit a whole split out: check only those that spoke
            arr = np.asarray(probs, dtype=np.float64)
            if arr.ndim == 3 and arr.shape[1] == len(names):
                spoke = ~np.isnan(arr).all(axis=(0, 2))  # (T,)
                if spoke.any() and not spoke.all():
                    check_probs(arr[:, spoke], [n for n, s in zip(names, spoke) if s])
                    return arr
        probs = check_probs(probs, names)
        if fitting and probs.shape[1] < 2:  # one teacher's confusion cannot be told apart from the class prior
            raise AggregatorError(f"the Bayesian aggregator needs at least two teachers, got {probs.shape[1]} "
                                  f"({', '.join(names or ['teacher 0'])}); for one teacher use aggregator=single")
        return probs

    @property
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "float64" else torch.float32

    def _require_fit(self):
        if not hasattr(self, "globals_"):
            raise AggregatorError("BayesianDawidSkene is not fitted yet; call fit() or fit_table() first")

    def _fit_long(self, long: Long, names: list[str], k: int, worker_ids=None, gold=None):
        pyro.set_rng_seed(self.seed)
        dev = resolve_device(self.device)
        t = len(names)
        silent = np.bincount(long.teacher[long.answered], minlength=t) == 0
        if silent.any():
            raise AggregatorError(f"{names[int(np.argmax(silent))]} has no labels at all")
        self.teacher_names_ = names
        self.worker_ids_ = worker_ids
        self.n_classes_ = k
        self.device_ = dev
        self.edges_ = bin_edges(long.teacher, long.top, t, self.soft_bins)
        self.bins_ = np.array([e.size + 1 for e in self.edges_])  # (T,) bins actually used
        b = int(self.bins_.max())
        self.stride_ = b
        abstains = np.bincount(long.teacher[~long.answered], minlength=t) > 0  # (T,) abstentions as answers
        a = k * b + int(abstains.any())  # the last answer, when present, is "abstained"
        answer = answer_codes(long, self.edges_, b, k)  # (M,)
        clamp = gold_clamp(gold, long.n, k, self._dtype, dev)
        data = pad_answers(long, answer, a, dev, clamp)
        self._build_model(t, k, b, a, abstains, dev)
        self.teacher_weight_ = np.ones(t)
        rows = self._batch_rows(data.n) or data.n
        threads = self._threads_for(rows * data.codes.shape[1] * k * self.difficulty_levels)
        enough_gold = gold is not None and (gold >= 0).sum() >= MIN_GOLD
        # "auto" judges dependence only against gold: the gold-free measure (excess agreement over a
        # first fit) catches copies but cost 5 points on the product crowd set, and on YouTube 0.8
        # points on valid (1.6 on test), down-weighting workers and rules that were not copies
        if self.correlated == "downweight" or (self.correlated == "auto" and enough_gold):
            if enough_gold:
                self.dependence_ = dependence_given_class(self._votes(long), gold, k)
            else:
                with torch_threads(threads):
                    self._optimise(data, self._init_values(long, answer, data, t, k, a, gold))
                pi = self.globals_["pi"].double().cpu().numpy()
                self.dependence_ = excess_agreement(self._votes(long), self._answer_given_class(), pi)
            self.teacher_weight_ = likelihood_weights(self.dependence_, self.dependence_threshold)
            self._model.weight = torch.as_tensor(self.teacher_weight_, dtype=self._dtype, device=dev)
        with torch_threads(threads):
            init = self._init_values(long, answer, data, t, k, a, gold)
            if self.method == "nuts":
                self._sample_nuts(data, init)
            else:
                self._optimise(data, init)
            # teacher statistics come from the posterior of the rows without gold (all rows, unanchored)
            unlabelled = gold < 0 if gold is not None and (gold < 0).any() else np.ones(long.n, dtype=bool)
            report = self._report_rows(long, answer, unlabelled, a, dev)
            post, _ = self._posterior(report[1])
            draws = self._interval_draws(data, report[1]) if self._use_laplace(t, k, a, data.n) else None
            checked = None
            if enough_gold and (gold < 0).any():
                on_gold = self._report_rows(long, answer, gold >= 0, a, dev)
                checked = (on_gold[0], self._posterior(on_gold[1])[0], gold[gold >= 0])
        self.teachers_ = self._teacher_stats(report[0], report[2], post, draws)
        if checked is not None:
            self._correct_with_gold(*checked)
        self.n_gold_ = 0 if gold is None else int((gold >= 0).sum())
        mean_acc = np.mean([s["accuracy"] for s in self.teachers_.values()])
        if mean_acc <= 1.0 / k:
            warnings.warn(
                f"mean teacher accuracy {mean_acc:.3f} is at or below chance (1/{k}): the fit is probably "
                "label-switched (classes permuted); check the teachers or raise prior_diag",
                stacklevel=3,
            )
        self._warn_if_one_class(post)
        return self

    def _votes(self, long: Long) -> np.ndarray:
        """(N, T): the class each teacher voted, K where it abstained, -1 where it was not present."""
        votes = np.full((long.n, len(self.teacher_names_)), -1)
        votes[long.example, long.teacher] = np.where(long.answered, long.label, self.n_classes_)
        return votes

    def _answer_given_class(self) -> np.ndarray:
        """(T, K, K[+1]) each teacher's fitted distribution over (class voted[, abstained]) per true
        class, the difficulty mixture summed out."""
        t, k, b, m = len(self.teacher_names_), self.n_classes_, self.stride_, self._model
        g = {name: v.double().cpu().numpy() for name, v in self.globals_.items()}
        lam = np.asarray(self.lam_)
        rho = g["rho"] if m.D > 1 else np.ones(1)
        mix = np.einsum("d,tza->tza", rho * (1 - lam), g["confusion"])  # (T, K, A)
        if m.D > 1:
            mix = mix + (rho * lam).sum() * g["guess"][:, None, :]
        coarse = mix[..., : k * b].reshape(t, k, k, b).sum(-1)  # (T, K, K) class voted
        return np.concatenate([coarse, mix[..., -1:]], -1) if m.A > k * b else coarse

    def _report_rows(self, long: Long, answer, rows: np.ndarray, a: int, dev):
        """The labels of the examples in ``rows`` alone, re-indexed: (long, padded answers, answer codes)."""
        new_index = np.cumsum(rows) - 1  # (N,)
        keep = rows[long.example]  # (M,)
        sub = Long(new_index[long.example[keep]], long.teacher[keep], long.label[keep], long.top[keep],
                   int(rows.sum()))
        clamp = gold_clamp(None, sub.n, self.n_classes_, self._dtype, dev)
        return sub, pad_answers(sub, answer[keep], a, dev, clamp), answer[keep]

    def _warn_if_one_class(self, post: np.ndarray) -> None:
        """A posterior that calls every example one class has collapsed (e.g. one-sided rules whose
        abstentions were treated as missing): say so loudly, naming the teachers that voted otherwise."""
        k = self.n_classes_
        top = post.argmax(1)
        share = np.bincount(top, minlength=k) / max(len(top), 1)
        if len(top) >= 20 and share.max() >= 0.995:
            only = int(share.argmax())
            dissent = [n for n, s in self.teachers_.items() if any(
                j != only and c > 0 for j, c in enumerate(s["answered_share"]))]
            named = ", ".join(dissent[:5]) + (f" and {len(dissent) - 5} more" if len(dissent) > 5 else "")
            warnings.warn(
                f"the posterior puts {share.max():.1%} of the examples in one class ({self.classes_[only]}); "
                f"teachers that voted for other classes: {named or 'none'}; with one-sided rules keep "
                "abstention='evidence'",
                stacklevel=4,
            )

    def _batch_rows(self, n: int) -> int | None:
        """Examples per SVI step; None = all ("auto": full batch up to 2^16 examples, else 2^14)."""
        bs = self.batch_size
        if bs == "auto":
            bs = None if n <= (1 << 16) else 1 << 14
        return bs if bs and bs < n else None

    def _threads_for(self, work: int) -> int | None:
        """Torch threads for tensors of ``work`` elements per step ("auto": 1 below 2^20).

        For small tensors OpenMP's fork/join costs more than the second core saves, and on a busy
        machine oversubscription turns that into a disaster (product set: 1.6 s on 1 thread, 22 s on
        2 threads while another process held a core)."""
        if self.threads == "auto":
            return 1 if work < (1 << 20) and self.device_.type == "cpu" else None
        return self.threads

    def _build_model(self, t, k, b, a, abstains, dev):
        used = np.arange(b)[None, :] < self.bins_[:, None]  # (T, B)
        used_ab = np.tile(used, (1, k))  # (T, K*B): answer = class * B + bin
        cls_of = np.repeat(np.arange(k), b)  # (K*B,)
        same = cls_of[None, :] == np.arange(k)[:, None]  # (K, K*B)
        # prior mass of class k spread evenly over the bins teacher t actually uses
        spread = (same[None] & used_ab[:, None, :]) / self.bins_[:, None, None]  # (T, K, K*B)
        diag = np.where(np.eye(k, dtype=bool), self.prior_diag, (1 - self.prior_diag) / (k - 1))  # (K, K)
        conf_conc = 1.0 + self.prior_strength * diag[None] @ spread  # (T, K, K*B)
        guess_conc = 1.0 + self.guess_prior * used_ab / (k * self.bins_[:, None])  # (T, K*B)
        if a > k * b:  # the abstention answer: a flat prior (its rate per class is what the data tell)
            used_ab = np.concatenate([used_ab, abstains[:, None]], 1)  # (T, A)
            conf_conc = np.concatenate([conf_conc, np.ones((t, k, 1))], 2)
            guess_conc = np.concatenate([guess_conc, 1.0 + self.guess_prior * abstains[:, None] / (k * b)], 1)
        f = dict(dtype=self._dtype, device=dev)
        class_counts = PINNED if self.class_balance == "uniform" else self.class_prior
        d = self.difficulty_levels
        self.lam_ = np.linspace(0.0, self.max_difficulty, d) if d > 1 else np.zeros(1)
        self._used = used_ab
        self._model = DawidSkeneModel(
            torch.tensor(conf_conc, **f),
            torch.tensor(guess_conc, **f),
            torch.full((k,), 1.0 + class_counts / k, **f),
            torch.full((d,), 1.0 + self.difficulty_prior / d, **f),
            torch.tensor(self.lam_, **f),
        )

    def _init_values(self, long: Long, answer, data, t, k, a, gold=None) -> dict:
        """Confusions from soft-majority-vote counts (gold where known): a start on the right side of
        label switching."""
        spoke = long.answered  # abstentions vote for nothing
        vote = np.zeros((long.example.size, k))
        # a label with top-probability p votes p for its class and spreads the rest evenly
        vote[spoke] += ((1.0 - long.top[spoke]) / max(k - 1, 1))[:, None]
        vote[np.nonzero(spoke)[0], long.label[spoke]] = long.top[spoke]
        q = np.stack([np.bincount(long.example, weights=vote[:, z], minlength=long.n) for z in range(k)], 1)
        q = (q + 1e-3) / (q + 1e-3).sum(1, keepdims=True)  # (N, K) soft majority vote
        if gold is not None:
            q[gold >= 0] = np.eye(k)[gold[gold >= 0]]
        counts = self._expected_counts(long, answer, q, t, k, a)  # (T, K, A)
        conf = counts + (self._model.conf_conc.cpu().numpy() - 1.0) + 0.5 * self._used[:, None, :]
        conf = np.where(self._used[:, None, :], conf, 1e-6)
        conf /= conf.sum(-1, keepdims=True)
        marg = counts.sum(1) + 1.0 * self._used  # (T, A) how often t gives each answer
        guess = np.where(self._used, marg, 1e-6)
        guess /= guess.sum(-1, keepdims=True)
        pi = q.mean(0)
        d = self.difficulty_levels
        rho = np.linspace(2.0, 1.0, d)  # most examples start easy
        rho /= rho.sum()
        vals = {"pi": pi, "confusion": conf, "guess": guess, "rho": rho}
        f = dict(dtype=self._dtype, device=self.device_)
        vals = {n: torch.tensor(v, **f) for n, v in vals.items()}
        if self.init_em > 0:
            # a few closed-form EM sweeps on (a sample of) the data: SVI then starts near the mode
            # and needs tens of steps, not hundreds
            sub = torch.randperm(data.n, device=data.codes.device)[: self.init_em_examples]
            rows = data.rows(sub) if data.n > self.init_em_examples else (data.codes, data.mask, data.clamp)
            for _ in range(self.init_em):
                new = self._model.em_step(vals, *rows, scale=data.n / rows[0].shape[0])
                moved = max(float((new[n] - vals[n]).abs().max()) for n in vals)
                vals = new
                if moved < 1e-4:
                    break
        simplex = biject_to(constraints.simplex)
        return {n: simplex.inv(v).detach().clone().requires_grad_(True) for n, v in vals.items()}

    @staticmethod
    def _expected_counts(long: Long, answer, q, t, k, a) -> np.ndarray:
        """counts[t, z, a] = sum over t's labels with answer a of P(z_i = z)."""
        flat = long.teacher * a + answer  # (M,)
        w = q[long.example]  # (M, K)
        out = np.stack([np.bincount(flat, weights=w[:, z], minlength=t * a) for z in range(k)], 1)  # (T*A, K)
        return out.reshape(t, a, k).transpose(0, 2, 1)

    def _optimise(self, data: Answers, values: dict):
        model = self._model
        params = [values[n] for n in ("pi", "confusion", "guess")]
        params += [values["rho"]] if model.D > 1 else []
        guide = model.make_guide(values)
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
        optim = torch.optim.Adam(params, lr=self.lr)
        n = data.n
        bs = self._batch_rows(n)
        window = 10
        losses = []
        self.loss_history_ = losses
        started = time.perf_counter()
        from tqdm.auto import tqdm

        perm, pos, decays, since = None, 0, 0, 0
        bar = tqdm(total=self.steps, disable=not self.progress, desc="BayesianDawidSkene", leave=False)
        try:
            for step in range(self.steps):
                if bs is None:
                    codes, mask, clamp, sub = data.codes, data.mask, data.clamp, None
                else:
                    if perm is None or pos + bs > n:
                        perm, pos = torch.randperm(n, device=data.codes.device), 0
                    sub = perm[pos:pos + bs]
                    pos += bs
                    codes, mask, clamp = data.rows(sub)
                optim.zero_grad(set_to_none=True)
                loss = elbo.differentiable_loss(model.model, guide, codes, mask, clamp, n, sub)
                loss.backward()
                optim.step()
                losses.append(float(loss.detach()) / n)  # per example, so tol means the same at any N
                bar.update(1)
                if step % window == window - 1:
                    bar.set_postfix(loss=f"{losses[-1]:.4f}")
                    if len(losses) - since >= 2 * window:
                        now = float(np.mean(losses[-window:]))
                        before = float(np.mean(losses[-2 * window:-window]))
                        if before - now < self.tol * max(abs(now), 1e-8):
                            if decays >= self.lr_decays:
                                break
                            # plateau: Adam now circles the mode (or, on minibatches, rides the
                            # noise); a smaller step settles it before we stop
                            decays, since = decays + 1, len(losses)
                            for group in optim.param_groups:
                                group["lr"] *= 0.2
        finally:
            bar.close()
        self.fit_seconds_ = time.perf_counter() - started
        self.n_steps_ = len(losses)
        simplex = biject_to(constraints.simplex)
        used = {"pi", "confusion", "guess"} | ({"rho"} if model.D > 1 else set())
        with torch.no_grad():
            self.globals_ = {n: simplex(v).detach() for n, v in values.items() if n in used}
        self._guide_values = {n: v.detach() for n, v in values.items() if n in used}

    def _sample_nuts(self, data: Answers, values: dict):
        """Full-batch NUTS over the globals, z and d still enumerated exactly (small problems only).

        The per-example posteriors and teacher summaries then use the posterior-mean globals (a
        plug-in, not an average of posteriors over draws); the draws are kept in ``samples_``."""
        from pyro.infer import MCMC, NUTS
        from pyro.infer.autoguide.initialization import init_to_value

        simplex = biject_to(constraints.simplex)
        start = {n: simplex(v).detach() for n, v in values.items() if n != "rho" or self._model.D > 1}
        kernel = NUTS(self._model.model, max_plate_nesting=1, init_strategy=init_to_value(values=start))
        mcmc = MCMC(kernel, num_samples=self.nuts_samples, warmup_steps=self.nuts_warmup,
                    disable_progbar=not self.progress)
        started = time.perf_counter()
        mcmc.run(data.codes, data.mask, data.clamp, data.n, None)
        self.fit_seconds_ = time.perf_counter() - started
        self.n_steps_ = self.nuts_samples + self.nuts_warmup
        self.loss_history_ = []
        self.samples_ = {n: v.detach() for n, v in mcmc.get_samples().items()}
        mean = {n: v.mean(0) for n, v in self.samples_.items()}  # a mean of simplex points stays on it
        self.globals_ = mean
        self._guide_values = {n: simplex.inv(v) for n, v in mean.items()}

    # ---------------------------------------------------------------- posteriors

    def _posterior(self, data: Answers, chunk: int = 1 << 16):
        """Exact per-example marginals of z and d (TraceEnum_ELBO.compute_marginals), chunked."""
        model = self._model
        guide = model.make_guide(self._guide_values)
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
        post, diff = [], []
        lam = torch.as_tensor(self.lam_, dtype=self._dtype, device=self.device_)
        with torch.no_grad():
            for s in range(0, data.n, chunk):
                codes, mask, clamp = data.codes[s:s + chunk], data.mask[s:s + chunk], data.clamp[s:s + chunk]
                marg = elbo.compute_marginals(model.model, guide, codes, mask, clamp, codes.shape[0])
                post.append(marg["z"].probs.reshape(-1, model.K))  # (n, K)
                if model.D > 1:
                    diff.append(marg["d"].probs.reshape(-1, model.D) @ lam)  # (n,)
        post = torch.cat(post).double().cpu().numpy()
        post /= post.sum(1, keepdims=True)
        difficulty = torch.cat(diff).double().cpu().numpy() if diff else np.zeros(data.n)
        return post, difficulty

    def _predict_long(self, long: Long, gold: np.ndarray | None = None) -> Aggregate:
        k, b = self.n_classes_, self.stride_
        if not long.answered.all():
            # a teacher that never abstained while fitting has no learned abstention rate: its
            # silence on new rows is missing data
            keep = long.answered | (self._used[long.teacher, -1] if self._model.A > k * b else False)
            long = Long(long.example[keep], long.teacher[keep], long.label[keep], long.top[keep], long.n)
        answer = answer_codes(long, self.edges_, b, k)
        data = pad_answers(long, answer, self._model.A, self.device_,
                           gold_clamp(gold, long.n, k, self._dtype, self.device_))
        with torch_threads(self._threads_for(data.codes.numel() * k * self.difficulty_levels)):
            post, difficulty = self._posterior(data)
        return Aggregate(
            posterior=post,
            confidence=confidence_from_posterior(post),
            difficulty=difficulty,
            teachers=self.teachers_,
        )

    # ---------------------------------------------------------------- teacher summaries

    def _correct_with_gold(self, long: Long, post: np.ndarray, gold: np.ndarray) -> None:
        """Correct each teacher's accuracy estimate by the model's own error on the gold rows.

        The model judges a teacher by the posterior, which it builds partly from that teacher: where
        teachers err together (AG News) it is sure of their consensus and too kind to them, and no
        posterior over its globals can see that. On the gold rows, scored as if unlabelled, its
        estimate can be set against the truth; that gap is taken off the w2s_train estimate and its
        sampling error (binomial, on the gold rows) widens the interval in quadrature."""
        z = stats.norm.ppf(1 - (1 - self.credible_mass) / 2)
        for j, name in enumerate(self.teacher_names_):
            rows = (long.teacher == j) & long.answered
            if rows.sum() < MIN_SHARED_ROWS:
                continue
            said = post[long.example[rows], long.label[rows]]  # (m,) the model's belief that t was right
            right = (long.label[rows] == gold[long.example[rows]]).astype(float)
            gap = float(said.mean() - right.mean())
            se = float(np.sqrt(max(right.mean() * (1 - right.mean()), 1.0 / rows.sum()) / rows.sum()))
            est = self.teachers_[name]
            half = (est["accuracy_high"] - est["accuracy_low"]) / 2
            mid = (est["accuracy_high"] + est["accuracy_low"]) / 2 - gap
            half = float(np.hypot(half, z * se))
            est.update(accuracy_model=est["accuracy"], accuracy=float(np.clip(est["accuracy"] - gap, 0, 1)),
                       accuracy_low=float(max(mid - half, 0.0)), accuracy_high=float(min(mid + half, 1.0)),
                       gold_gap=gap, interval_method=est["interval_method"] + "+gold")

    def _use_laplace(self, t: int, k: int, a: int, n: int) -> bool:
        """Laplace intervals unless asked otherwise, or ("auto") too many globals for a dense Hessian
        or too many examples to redraw every class hundreds of times."""
        if self.intervals == "counts":
            return False
        n_params = t * k * (a - 1) + (t * (a - 1) if self.difficulty_levels > 1 else 0)
        return self.intervals == "laplace" or (n_params <= MAX_LAPLACE_PARAMS and n <= MAX_LAPLACE_ROWS)

    def _interval_draws(self, data: Answers, report: Answers) -> np.ndarray:
        """(S, N_report) classes drawn from the posterior predictive: globals from the Laplace
        approximation (``laplace.py``), then every example's class from its exact posterior."""
        from .laplace import draw_globals, laplace

        m = self._model
        f = dict(dtype=torch.float64, device=self.device_)
        exact = DawidSkeneModel(m.conf_conc.to(**f), m.guess_conc.to(**f), m.alpha_pi.to(**f), m.alpha_rho.to(**f),
                                m.lam.to(**f))
        exact.weight = m.weight.to(**f)
        used = torch.as_tensor(self._used, device=self.device_)
        names = ("pi", "confusion") + (("rho", "guess") if m.D > 1 else ())
        values = {n: self.globals_[n].to(**f) for n in names}
        masks = {"pi": torch.ones(m.K, dtype=torch.bool, device=self.device_),
                 "confusion": used[:, None, :].expand(m.T, m.K, m.A).clone(),
                 "rho": torch.ones(m.D, dtype=torch.bool, device=self.device_), "guess": used}
        coords, mode, evecs, scale = laplace(exact, values, {n: masks[n] for n in names}, data.codes, data.mask,
                                             data.clamp.to(torch.float64))
        gen = torch.Generator(device=self.device_).manual_seed(self.seed)
        draws = []
        with torch.no_grad():
            for g in draw_globals(coords, mode, evecs, scale, self.interval_draws, gen):
                q = exact.class_posterior(g["pi"], g.get("rho"), g["confusion"], g.get("guess"),
                                          report.codes, report.mask)  # (n, K)
                draws.append(torch.multinomial(q, 1, generator=gen)[:, 0])
        self.laplace_scale_ = scale.cpu().numpy()
        return torch.stack(draws).cpu().numpy()  # (S, n)

    def _teacher_stats(self, long: Long, answer, post, draws: np.ndarray | None = None) -> dict:
        """Per teacher: what the posterior says of its answers on the rows in ``long`` (see the class
        docstring); intervals from ``draws`` (posterior-predictive classes) when given."""
        t, k, b = len(self.teacher_names_), self.n_classes_, self.stride_
        a = self._model.A
        counts = self._expected_counts(long, answer, post, t, k, a)  # (T, K, A)
        conc = self._model.conf_conc.cpu().numpy()
        alpha = np.where(self._used[:, None, :], conc + counts, 0.0)  # (T, K, A) Dirichlet posterior
        alpha_kk = alpha[..., : k * b].reshape(t, k, k, b).sum(-1)  # (T, K, K) collapsed over bins
        total = alpha_kk.sum(-1, keepdims=True)
        lo_q, hi_q = (1 - self.credible_mass) / 2, 1 - (1 - self.credible_mass) / 2
        if draws is not None:
            spoke = long.answered
            hit = draws[:, long.example[spoke]] == long.label[spoke]  # (S, M')
            n_spoke = np.maximum(np.bincount(long.teacher[spoke], minlength=t), 1)
            acc_draws = np.stack([np.bincount(long.teacher[spoke], weights=h, minlength=t) for h in hit]) / n_spoke
            flat = (long.teacher[spoke] * k) * k + long.label[spoke]  # (M',) (teacher, ., answered class)
            conf_draws = np.stack([np.bincount(flat + z[long.example[spoke]] * k, minlength=t * k * k)
                                   for z in draws]).reshape(-1, t, k, k)
            conf_draws = conf_draws / np.maximum(conf_draws.sum(-1, keepdims=True), 1)
            acc_lo, acc_hi = np.quantile(acc_draws, [lo_q, hi_q], axis=0)
            low, high = np.quantile(conf_draws, [lo_q, hi_q], axis=0)
        else:
            # the older approximation: Dirichlet(prior + expected counts), a Beta per entry
            low = stats.beta.ppf(lo_q, alpha_kk, total - alpha_kk)
            high = stats.beta.ppf(hi_q, alpha_kk, total - alpha_kk)
            diag = np.einsum("tzz->t", alpha_kk)
            acc_lo = stats.beta.ppf(lo_q, diag, alpha_kk.sum((1, 2)) - diag)
            acc_hi = stats.beta.ppf(hi_q, diag, alpha_kk.sum((1, 2)) - diag)
        g = {n: v.double().cpu().numpy() for n, v in self.globals_.items()}
        conf_easy = g["confusion"][..., : k * b].reshape(t, k, k, b).sum(-1)  # (T, K, K)
        guess = g["guess"][..., : k * b].reshape(t, k, b).sum(-1)  # (T, K)
        spoke = long.answered
        n_labels = np.bincount(long.teacher[spoke], minlength=t)
        n_rows = np.bincount(long.teacher, minlength=t)
        answered = np.bincount(long.teacher[spoke] * k + long.label[spoke], minlength=t * k).reshape(t, k)
        per_bin = counts[..., : k * b].reshape(t, k, k, b)  # (T, Z, class, bin)
        out = {}
        for j, name in enumerate(self.teacher_names_):
            nb = int(self.bins_[j])
            diag = np.diag(alpha_kk[j]).sum()
            bin_total = per_bin[j].sum((0, 1))[:nb]
            bin_right = np.einsum("zzb->b", per_bin[j])[:nb]
            out[name] = {
                "accuracy": float(diag / alpha_kk[j].sum()),  # expected share of its answers that are right
                "accuracy_low": float(acc_lo[j]),
                "accuracy_high": float(acc_hi[j]),
                "interval_method": "laplace" if draws is not None else "counts",
                "confusion": (alpha_kk[j] / total[j]).tolist(),
                "confusion_low": low[j].tolist(),
                "confusion_high": high[j].tolist(),
                "confusion_easy": conf_easy[j].tolist(),
                "guess": guess[j].tolist() if self._model.D > 1 else None,
                "abstain_given_class": (alpha[j, :, -1] / alpha[j].sum(-1)).tolist() if a > k * b else None,
                "answered_share": (answered[j] / max(answered[j].sum(), 1)).tolist(),
                "bin_edges": self.edges_[j].tolist(),
                "bin_accuracy": (bin_right / np.maximum(bin_total, 1e-12)).tolist(),
                "bin_share": (bin_total / max(bin_total.sum(), 1e-12)).tolist(),
                "n_labels": int(n_labels[j]),
                "likelihood_weight": float(self.teacher_weight_[j]),
                "coverage": float(n_labels[j] / max(n_rows[j], 1)) if a > k * b else None,
            }
        return out

