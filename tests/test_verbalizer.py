"""The causal-LM student on classification (``student=gemma3``, recipe ``verbalize``): verbalizer
scores, the weighted soft cross-entropy against a hand computation, training that moves the scores
the way the targets say, and the pipeline end to end with a tiny causal LM built from its config."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong.cli import CONFIG_DIR
from weaks2strong.models.causal_lm import CandidateCollator, CandidateRow, load_causal_lm
from weaks2strong.models.soft_target import predict_proba
from weaks2strong.models.verbalizer import VerbalizerModule
from weaks2strong.zoo import resolve_model

VERBALIZERS = ["Negative", "Positive", "Mixed"]
ROWS = [CandidateRow("Review: a fine film\nAnswer:", VERBALIZERS, [0.7, 0.3, 0.0], 1.0),
        CandidateRow("Review: dull and long, far too long\nAnswer:", VERBALIZERS, [0.0, 0.0, 1.0], 0.25)]


@pytest.fixture
def tiny(models_dir):
    torch.manual_seed(0)
    return load_causal_lm(resolve_model("tiny-llama", models_dir))


def hand_scores(tok, lm, row: CandidateRow) -> list[float]:
    """log p(" <verbalizer>\\n" | prompt), one plain forward per class, summed over the completion tokens."""
    prompt = tok(row.prompt).input_ids
    scores = []
    for verbalizer in row.candidates:
        completion = tok(" " + verbalizer + "\n", add_special_tokens=False).input_ids
        ids = torch.tensor([prompt + completion])
        logp = lm(ids).logits[0, :-1].log_softmax(-1)
        scores.append(sum(logp[len(prompt) - 1 + t, c].item() for t, c in enumerate(completion)))
    return scores


def test_the_loss_is_a_weighted_soft_cross_entropy_over_every_verbalizer(tiny):
    tok, lm = tiny
    module = VerbalizerModule(lm, optimizer=torch.optim.AdamW)
    batch = CandidateCollator(tok, every_candidate=True)(ROWS)
    with torch.no_grad():
        logits = module.batch_logits(batch)  # (2, 3): a zero-mass verbalizer is scored too
        loss = module._loss(batch).item()
    hand = np.array([hand_scores(tok, lm, row) for row in ROWS])
    np.testing.assert_allclose(logits.numpy(), hand, atol=1e-5)
    log_p = hand - np.logaddexp.reduce(hand, axis=1, keepdims=True)
    q, w = np.array([r.probs for r in ROWS]), np.array([r.weight for r in ROWS])
    expected = (w * -(q * log_p).sum(1)).sum() / w.sum()
    assert loss == pytest.approx(expected, abs=1e-5)


def test_training_on_a_class_raises_its_probability(tiny):
    tok, lm = tiny
    # the longest verbalizer: with a byte-level tiny tokenizer it starts as the least likely
    rows = [CandidateRow(f"Review: film number {i}\nAnswer:", VERBALIZERS, [1.0, 0.0, 0.0], 1.0) for i in range(8)]
    loader = [CandidateCollator(tok, every_candidate=True)(rows)]
    module = VerbalizerModule(lm, optimizer=torch.optim.AdamW)
    before = predict_proba(module, loader)[:, 0].mean().item()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    module.train()
    for _ in range(10):
        optimizer.zero_grad()
        module._loss(loader[0]).backward()
        optimizer.step()
    after = predict_proba(module, loader)
    assert before < 0.01 and after[:, 0].mean().item() > 0.5
    torch.testing.assert_close(after.sum(-1), torch.ones(len(rows)))


@pytest.mark.integration
def test_sst2_with_the_causal_lm_student_end_to_end(tmp_path, models_dir):
    from weaks2strong import pipeline

    overrides = ["student=gemma3", "student.encoder=tiny-llama", "teachers=lexical", "debug=fast", "logger=csv",
                 f"paths.output_dir={tmp_path}/run", f"paths.runs_dir={tmp_path}/runs",
                 f"paths.models_dir={models_dir}", "task.sizes.w2s_train=24", "task.sizes.val=16",
                 "task.sizes.test=16", "student.save_weights=true"]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    metrics = pipeline.run(cfg)
    for row in ("ceiling", "student"):
        assert 0.0 <= metrics[row]["test"]["accuracy"] <= 1.0
    artifacts = json.loads(Path(tmp_path / "run" / "artifacts.json").read_text())
    predictions = pd.read_parquet(Path(artifacts["student"]) / "predictions.parquet")
    probs = predictions.filter(regex=r"^p_\d+$").to_numpy()
    assert set(predictions["split"]) == {"w2s_train", "val"} and probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert metrics == pipeline.run(cfg)  # reused from the artifacts: the same numbers


def test_a_task_without_verbalizers_is_refused_in_one_line(tmp_path):
    args = [sys.executable, "-m", "weaks2strong.cli", "student=gemma3", "teachers=lexical", "debug=fast",
            "logger=none", "task.verbalizers=[]", f"paths.runs_dir={tmp_path}/runs"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("w2s: error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert "task.verbalizers has 0 entries for 2 classes" in errors[0]
