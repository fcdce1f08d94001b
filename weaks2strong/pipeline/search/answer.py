"""The search path's answer stage (``search_answers``): one method's answers on one split, by
chunk-level beam search of the strong model steered by the guide pair; the key and the caching are
``run.py``'s."""
from __future__ import annotations

import logging
import time

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from weaks2strong.pipeline.generation.teach import gen_task_key
from weaks2strong.runtime.artifacts import Store, write_json, write_table
from weaks2strong.tasks.generation import GenerationTask

log = logging.getLogger("weaks2strong.pipeline")


def answer_split(task: GenerationTask, split: str, name: str, method: DictConfig, parts: dict, seed: int,
                 store: Store, key: str) -> None:
    from weaks2strong.models.causal_lm import encode_prompts
    from weaks2strong.search.cbs import StrongModel, chunk_beam_search

    strong, guide = parts["strong"], parts["guide"]
    if method.get("temperature") is not None:  # a method may decode at its own temperature (0: greedy)
        strong = StrongModel(strong.lm, strong.tok, method.temperature, strong.max_new_tokens)
    _, encoded = encode_prompts(strong.tok, parts["prefix"], task.prompts(split), max_prompt_tokens=512)
    rows, started, example_ids = [], time.perf_counter(), task.split(split)["example_id"].tolist()
    for i, (question, ids) in enumerate(tqdm(list(zip(task.questions(split), encoded)), desc=f"{name} {split}",
                                             unit="q")):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)  # per question: independent of order
        result = chunk_beam_search(strong, ids, lambda texts, done, q=question: guide.score_texts(q, texts, done),
                                   method.width, method.samples, method.chunk, generator, parts["head_cache"])
        rows.append({"example_id": example_ids[i], "answer": result.best.text.strip(),
                     "guide_score": result.best.score, "strong_tokens": result.strong_tokens})
    seconds = time.perf_counter() - started
    with store.create("search_answers", key, {"task": gen_task_key(task)},
                      {"method": OmegaConf.to_container(method), "split": split}) as tmp:
        write_table(tmp / "answers.parquet", pd.DataFrame(rows))
        write_json(tmp / "timing.json", {"seconds": seconds, "questions": len(rows)})
    log.info("search %s on %s: %d questions in %.1f s", name, split, len(rows), seconds)
