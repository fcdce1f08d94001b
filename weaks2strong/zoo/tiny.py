"""Tiny random models built from configs, so unit tests need no weights.

The tokenizer is byte-level with no merges: every string tokenizes, nothing needs training.
"""
from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def byte_tokenizer(encoder: bool = False):
    """``encoder=True`` adds BERT's special-token template: ``<s> A </s>`` and ``<s> A </s> B </s>`` for pairs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    if encoder:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> $B </s>",
            special_tokens=[(t, SPECIALS.index(t)) for t in ("<s>", "</s>")])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny(kind: str, out: Path, seed: int = 0) -> None:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig

    torch.manual_seed(seed)
    tok = byte_tokenizer(encoder=kind == "bert")
    if kind == "bert":
        config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
        model = AutoModel.from_config(config)
    elif kind == "llama":
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024,
                             pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id)
        model = AutoModelForCausalLM.from_config(config)
    else:
        raise ValueError(f"unknown tiny model kind '{kind}'")
    model.save_pretrained(out)
    tok.save_pretrained(out)
