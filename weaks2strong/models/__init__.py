"""nn.Modules, heads and losses (pure functions); models are loaded from zoo folders."""
from weaks2strong.models.classifier import EncoderClassifier
from weaks2strong.models.encoders import load_encoder
from weaks2strong.models.soft_target import SoftTargetModule, predict_proba

__all__ = ["EncoderClassifier", "SoftTargetModule", "load_encoder", "predict_proba"]


def __getattr__(name: str):
    # A DataModule that moved to weaks2strong/student/data/ stays reachable here, lazily (models never
    # imports student at import time): conf/student/*.yaml's data._target_ names this path, and that
    # string is part of config_slice(cfg.student), which keys distill (cache keys).
    if name == "TargetsDataModule":
        from weaks2strong.student.data.targets import TargetsDataModule

        return TargetsDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
