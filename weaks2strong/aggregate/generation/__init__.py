"""Candidate-set aggregators for generation tasks: weak LMs' scores over each example's own candidate
answers in, (N, Cmax + 1) posteriors out (the last column: none of them). One class per file, all
keeping :class:`CandidateLabelModel`'s contract; ``METHODS`` maps ``aggregator.method`` to its class."""
from weaks2strong.aggregate.generation.base import CandidateLabelModel, check_candidates, check_gold, teacher_answers
from weaks2strong.aggregate.generation.bayes import (
    BayesianCandidateAggregator,
    CandidateData,
    CandidateModel,
    candidate_data,
)
from weaks2strong.aggregate.generation.joint import JointCandidates, joint_scores
from weaks2strong.aggregate.generation.majority import MajorityCandidates, majority_vote
from weaks2strong.aggregate.generation.single_teacher import BestSingleTeacher, best_single

METHODS: dict[str, type[CandidateLabelModel]] = {
    "bayes": BayesianCandidateAggregator,
    "majority": MajorityCandidates,
    "joint": JointCandidates,
    "single": BestSingleTeacher,
}

__all__ = ["METHODS", "BayesianCandidateAggregator", "BestSingleTeacher", "CandidateData", "CandidateLabelModel",
           "CandidateModel", "JointCandidates", "MajorityCandidates", "best_single", "candidate_data",
           "check_candidates", "check_gold", "joint_scores", "majority_vote", "teacher_answers"]
