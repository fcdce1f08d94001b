"""nn.Modules, heads and losses (pure functions); models are loaded from zoo folders."""
from weaks2strong.models.encoders import load_encoder

__all__ = ["load_encoder"]
