"""Classification aggregators, one method per file, each a ``LabelModel`` (``aggregate/base.py``)
that declares what it can do (``supports_gold``, ``supports_abstention``, ``needs_fit``).

``BayesianLabelModel`` (``bayes_label_model.py``, with its dependence, report and Pyro reference
files) is the hierarchical model for sparse rule sets and crowds; the older Bayesian Dawid-Skene
with per-example difficulty, still the pipeline's ``aggregator=bayes``, lives in ``aggregate/bayes.py``."""
from .bayes_label_model import BayesianLabelModel
from .dawid_skene import CrowdKitDawidSkene
from .majority import MajorityVote
from .mean import MeanProbabilities
from .single_teacher import SingleTeacher
from .snorkel import SnorkelLabelModel
from .weighted_majority import WeightedMajorityVote

__all__ = ["BayesianLabelModel", "CrowdKitDawidSkene", "MajorityVote", "MeanProbabilities", "SingleTeacher",
           "SnorkelLabelModel", "WeightedMajorityVote"]
