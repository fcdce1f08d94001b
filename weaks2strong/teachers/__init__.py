"""Weak teachers: each fits on ``weak_train`` (if trainable) and predicts class probabilities."""
from weaks2strong.teachers.base import Teacher, TeacherError, check_proba

__all__ = ["Teacher", "TeacherError", "check_proba"]
