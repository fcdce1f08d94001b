"""The strong student: a pretrained encoder + classification head, fine-tuned with Lightning on the
aggregated targets.

The classifier, its batching and its loss live in ``weaks2strong.models`` because the fine-tuned
weak teacher (``teachers.finetuned``) trains the same module on gold labels, and teachers may import
models but not the student. Alignment (SFT/DPO) modules will live here.
"""
from weaks2strong.models.batching import TargetsDataModule
from weaks2strong.models.classifier import SoftTargetClassifier
from weaks2strong.models.losses import weighted_soft_cross_entropy

__all__ = ["SoftTargetClassifier", "TargetsDataModule", "weighted_soft_cross_entropy"]
