"""The model zoo: short names resolve to local Hugging Face folders."""
from weaks2strong.models.zoo import ZOO, ModelError, load_encoder, pick_device, resolve_model

__all__ = ["ZOO", "ModelError", "load_encoder", "pick_device", "resolve_model"]
