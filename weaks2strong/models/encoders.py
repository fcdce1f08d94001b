"""Loading a pretrained encoder (optionally truncated, with its dropout overridden)."""
from __future__ import annotations


def load_encoder(path: str, num_layers: int | None = None, trust_remote_code: bool = False,
                 dropout: float | None = None):
    """``AutoModel.from_pretrained``, keeping only the first ``num_layers`` layers when asked, and
    with every dropout probability the config names set to ``dropout`` when given.

    The checkpoint's dropped layers are expected to go unused, so transformers' load report (a
    table of every unused tensor) is silenced for a truncated load.
    """
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if num_layers:
        config.num_hidden_layers = num_layers
    if dropout is not None:
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
            if hasattr(config, name):
                setattr(config, name, dropout)
    previous = hf_logging.get_verbosity()
    if num_layers:
        hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(path, config=config, trust_remote_code=trust_remote_code)
    finally:
        hf_logging.set_verbosity(previous)


def load_trainable_encoder(path: str, num_layers: int | None = None, trust_remote_code: bool = False,
                           dropout: float | None = None):
    """``load_encoder`` ready for fine-tuning under a mean-pooling head: no pooler, train mode."""
    encoder = load_encoder(path, num_layers, trust_remote_code, dropout=dropout)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # we mean-pool; an unused pooler would stall DDP's gradient sync
    return encoder.train()  # from_pretrained returns eval mode; fine-tuning wants dropout on
