"""The one DPO trainer, for every path that aligns a causal-LM student on preference pairs:

- generation (``gen_align``, ``gen_align_gold``): the distilled student, copied, DPO'd on pairs of
  candidates; its reference log-probs are the distilled student's, computed here before training;
  it then answers val, and keeps its whole weights with ``student.save_weights``.
- preference (``pref_align``): the pretrained student DPO'd on one source's pairs of responses;
  the reference log-probs come precomputed (``pref_reference``, shared by the students); it then
  scores val's pairs (margins), and keeps its LoRA adapters (or, full fine-tuning, its weights
  with ``student.save_weights``).
- classification (``align``): the verbalizer student, distilled or pretrained, DPO'd on pairs of
  class verbalizers from the aggregate; its reference log-probs are its start's, computed here; it
  then predicts w2s_train and val, and keeps its LoRA adapters.

What differs is what is aligned and what is kept, so those are the parameters of ``dpo_stage``
(``policy``, ``finish``); the training loop (``train_dpo``) and the artifact's pairs, timing and
log line are one."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from weaks2strong.pipeline.common.config import build, make_loggers
from weaks2strong.pipeline.common.stage import cached_stage, remember
from weaks2strong.runtime.artifacts import Artifact, Store, write_json, write_table, write_weights
from weaks2strong.runtime.errors import UserInputError

log = logging.getLogger("weaks2strong.pipeline")


@dataclass
class Policy:
    """The model to align, its tokenizer and collator, and the training and val pairs with their
    reference log-probs."""

    tokenizer: object
    lm: object
    collator: object
    pairs: list
    val_pairs: list


@dataclass
class Kept:
    """What a path keeps of its aligned student besides the pairs: tables (name -> frame), weights
    (file name -> state dict), the end of its log line (``{seconds}`` filled in) and small JSON
    records (name -> dict)."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    weights: dict[str, dict] = field(default_factory=dict)
    said: str = "DPO'd in {seconds:.1f} s"
    records: dict[str, dict] = field(default_factory=dict)


def dpo_collator(tok, cfg: DictConfig):
    """The pair collator of ``align``: its prompt and answer lengths and ``share_prompt``."""
    from weaks2strong.models.preference import PreferenceCollator

    return PreferenceCollator(tok, cfg.align.max_prompt_tokens, cfg.align.max_answer_tokens,
                              cfg.align.get("share_prompt", False))


def train_dpo(policy: Policy, cfg: DictConfig, run_dir: Path, logger_prefix: str):
    """Seed, wrap the policy's LM in ``align.model`` and fit it on its pairs (val pairs: DPO's val
    metrics) for ``align.epochs``. Returns the DPO module."""
    import pytorch_lightning as pl

    from weaks2strong.student.data.preferences import PreferenceDataModule

    a = cfg.align
    pl.seed_everything(cfg.seeds.student, workers=True, verbose=False)
    module = build(a.model, "align.model")(lm=policy.lm)
    data = PreferenceDataModule(policy.collator, policy.pairs, policy.val_pairs, batch_size=a.batch_size,
                                seed=cfg.seeds.student)
    trainer = instantiate(cfg.trainer, max_epochs=a.epochs, logger=make_loggers(cfg.get("logger"), logger_prefix),
                          enable_checkpointing=False, default_root_dir=str(run_dir))
    trainer.fit(module, datamodule=data)
    return module


def dpo_stage(store: Store, stage: str, key: str, pairs: list, *, name: str, where: str, cfg: DictConfig,
              run_dir: Path, logger_prefix: str, policy: Callable[[], Policy], finish: Callable[[dict, Policy], Kept],
              inputs: dict, config: dict, no_pairs: str | None = None) -> Artifact:
    """The aligned student of (stage, key): reused (logged as "<name>: reused (<path>)"), or ``pairs``
    checked (``where`` names them in an error; ``no_pairs``: the error when there is none), the
    ``policy()`` DPO'd, remembered as {"module", "tokenizer"}, and its pairs (with their reference
    log-probs), ``finish``'s tables and weights and its timing written."""
    from weaks2strong.models.preference import check_pairs

    def compute():
        started = time.perf_counter()
        if not pairs and no_pairs is not None:
            raise UserInputError(no_pairs)
        check_pairs(pairs, where)
        chosen = policy()
        module = train_dpo(chosen, cfg, run_dir, logger_prefix)
        parts = {"module": module, "tokenizer": chosen.tokenizer}
        remember(stage, key, parts)
        kept = finish(parts, chosen)
        with store.create(stage, key, inputs, config) as tmp:
            write_table(tmp / "pairs.parquet", pd.DataFrame([vars(r) for r in chosen.pairs]))
            for table, frame in kept.tables.items():
                write_table(tmp / f"{table}.parquet", frame)
            for file, state in kept.weights.items():
                write_weights(tmp / file, state)
            for record, value in kept.records.items():
                write_json(tmp / f"{record}.json", value)
            write_json(tmp / "timing.json", {"seconds": time.perf_counter() - started, "pairs": len(chosen.pairs)})
        log.info("%s: %d pairs, %s", name, len(chosen.pairs), kept.said.format(seconds=time.perf_counter() - started))

    return cached_stage(store, stage, key, compute, reused=f"{name}:")
