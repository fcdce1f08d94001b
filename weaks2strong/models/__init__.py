"""nn.Modules, heads and losses (pure functions); models are loaded from zoo folders."""
from weaks2strong.models.batching import TargetsDataModule
from weaks2strong.models.classifier import EncoderClassifier
from weaks2strong.models.encoders import load_encoder
from weaks2strong.models.soft_target import SoftTargetModule, predict_proba

__all__ = ["EncoderClassifier", "SoftTargetModule", "TargetsDataModule", "load_encoder", "predict_proba"]
