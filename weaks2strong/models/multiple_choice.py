"""A multiple-choice head: each (context + question, option) pair is encoded as a text pair, mean
pooled, and scored by one linear unit; the C scores of a row are its logits over the options.

The softmax over options happens in the loss, so ``SoftTargetModule`` trains it unchanged on (C,)
soft targets. Scoring each option against the context, with weights shared across options, is
what lets an encoder compare them (the four options read as one text pair leave it at chance).
"""
from __future__ import annotations

import torch
from torch import nn

from weaks2strong.models.classifier import mean_pool
from weaks2strong.models.encoders import load_trainable_encoder


class EncoderMultipleChoice(nn.Module):
    """One logit per option from ``encoder_path`` (a local HF folder); arguments as ``EncoderClassifier``'s,
    less ``num_classes`` (the number of options is the input's second dimension)."""

    def __init__(self, encoder_path: str, dropout: float = 0.1, trust_remote_code: bool = False,
                 num_layers: int | None = None, encoder_dropout: float | None = None):
        super().__init__()
        self.encoder = load_trainable_encoder(encoder_path, num_layers, trust_remote_code, dropout=encoder_dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, 1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, c, t = input_ids.shape  # (B, C, T): C (first, option) pairs per row
        flat_mask = attention_mask.reshape(b * c, t)  # (B*C, T)
        hidden = self.encoder(input_ids=input_ids.reshape(b * c, t), attention_mask=flat_mask).last_hidden_state
        scores = self.head(mean_pool(hidden, flat_mask))  # (B*C, H) -> (B*C, 1)
        return scores.view(b, c)  # (B, C) logits over the options
