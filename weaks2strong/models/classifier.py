"""Encoder classification heads: a pretrained encoder, mean pooling and a linear head. The strong
student's network, and (truncated to a few layers) the fine-tuned weak teacher's."""
from __future__ import annotations

import torch
from torch import nn

from weaks2strong.models.encoders import load_trainable_encoder


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, H) mean over real tokens


class EncoderClassifier(nn.Module):
    """K logits per text (or text pair) from ``encoder_path`` (a local HF folder).

    ``num_layers`` keeps only the encoder's first layers (the fine-tuned weak teacher);
    ``encoder_dropout`` overrides the encoder's own dropout (None keeps the checkpoint's).
    """

    def __init__(self, encoder_path: str, num_classes: int, dropout: float = 0.1, trust_remote_code: bool = False,
                 num_layers: int | None = None, encoder_dropout: float | None = None):
        super().__init__()
        self.encoder = load_trainable_encoder(encoder_path, num_layers, trust_remote_code, dropout=encoder_dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, num_classes))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(mean_pool(hidden, attention_mask))  # (B, K)
