"""The strong student: a pretrained encoder + classification head, trained with Lightning."""
from weaks2strong.student.data import TargetsDataModule
from weaks2strong.student.losses import weighted_soft_cross_entropy
from weaks2strong.student.module import SoftTargetClassifier

__all__ = ["SoftTargetClassifier", "TargetsDataModule", "weighted_soft_cross_entropy"]
