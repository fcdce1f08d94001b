"""DPO of the verbalizer student (``align=verbalizer_dpo``): pairs from a posterior table against hand
values (ties dropped and counted), the cDPO loss with weights on verbalizer log-probs against a hand
computation, a tiny-model run that widens the margin, bad input in one line, and the pipeline end to
end with a tiny causal LM: the reference log-probs it cached equal a fresh forward of the
teacher-forced student, evaluate reports the aligned student beside it, a rerun reuses the align
artifact, and DPO alone (``align.init=pretrained``) runs."""
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from weaks2strong.cli import CONFIG_DIR
from weaks2strong.models.causal_lm import CandidateCollator, CandidateRow, load_causal_lm
from weaks2strong.models.preference import DPOModule, PreferenceCollator, pair_logprobs, with_reference
from weaks2strong.models.verbalizer import VerbalizerModule
from weaks2strong.pipeline.classification.align import check_completions, verbalizer_pairs
from weaks2strong.runtime.errors import UserInputError
from weaks2strong.zoo import resolve_model

VERBALIZERS = ["Negative", "Positive", "Mixed"]
PROMPTS = [f"Review: film number {i}\nAnswer:" for i in range(5)]
SOFT = np.array([[0.6, 0.3, 0.1],  # Negative over Positive
                 [0.2, 0.3, 0.5],  # Mixed over Positive
                 [0.45, 0.1, 0.45],  # a tie for the top: dropped
                 [0.7, 0.15, 0.15],  # a tie below the top: the runner-up is the lower class
                 [0.4, 0.4, 0.2]])  # a tie for the top: dropped
WEIGHTS = np.array([0.9, 0.4, 1.0, 0.25, 0.7])


@pytest.fixture
def tiny(models_dir):
    torch.manual_seed(0)
    return load_causal_lm(resolve_model("tiny-llama", models_dir))


def test_pairs_from_the_posterior_argmax_and_runner_up_with_ties_dropped():
    pairs, tied = verbalizer_pairs(PROMPTS, VERBALIZERS, SOFT, WEIGHTS)
    assert tied == 2
    got = [(r.prompt, r.chosen, r.rejected, r.p, r.weight) for r in pairs]
    assert got == [(PROMPTS[0], "Negative", "Positive", 0.6, 0.9), (PROMPTS[1], "Mixed", "Positive", 0.5, 0.4),
                   (PROMPTS[3], "Negative", "Positive", 0.7, 0.25)]


def test_balanced_pairs_weigh_each_chosen_class_as_the_posterior_does():
    """align.balance: each chosen class's pairs together weigh its posterior mass (hand values), the
    total weight kept; a confidently labelled class no longer outweighs the others."""
    pairs, _ = verbalizer_pairs(PROMPTS, VERBALIZERS, SOFT, WEIGHTS, balance=True)
    mass = SOFT.sum(0)  # Negative 2.35, Positive 1.25, Mixed 1.4
    raw = {"Negative": np.array([0.9, 0.25]) * mass[0] / 1.15, "Mixed": np.array([0.4]) * mass[2] / 0.4}
    scale = (0.9 + 0.4 + 0.25) / (raw["Negative"].sum() + raw["Mixed"].sum())
    expected = [raw["Negative"][0] * scale, raw["Mixed"][0] * scale, raw["Negative"][1] * scale]
    np.testing.assert_allclose([r.weight for r in pairs], expected, rtol=1e-12)
    assert sum(r.weight for r in pairs) == pytest.approx(0.9 + 0.4 + 0.25)
    by_class = {c: sum(r.weight for r in pairs if r.chosen == c) for c in ("Negative", "Mixed")}
    assert by_class["Negative"] / by_class["Mixed"] == pytest.approx(mass[0] / mass[2])


def test_the_loss_is_weighted_cdpo_on_the_verbalizer_scores(tiny):
    """The pair's log-probs are the verbalizer classifier's own logits, and the loss on them is
    Σ w ℓ / Σ w with ℓ = −p log σ(βΔ) − (1 − p) log σ(−βΔ) (p = q(chosen): cDPO's ε = 1 − p)."""
    tok, lm = tiny
    pairs, _ = verbalizer_pairs(PROMPTS, VERBALIZERS, SOFT, WEIGHTS)
    refs = [(-9.0, -11.5), (-10.0, -8.0), (-12.0, -12.5)]
    pairs = [r.__class__(**{**vars(r), "ref_chosen": c, "ref_rejected": j}) for r, (c, j) in zip(pairs, refs)]
    beta = 0.5
    module = DPOModule(lm, optimizer=torch.optim.AdamW, beta=beta)
    with torch.no_grad():
        loss = module._step(PreferenceCollator(tok)(pairs), "train").item()
        rows = [CandidateRow(r.prompt, VERBALIZERS, [1 / 3] * 3) for r in pairs]
        logits = VerbalizerModule(lm, optimizer=None).batch_logits(CandidateCollator(tok, every_candidate=True)(rows))
    index = {v: k for k, v in enumerate(VERBALIZERS)}
    chosen = np.array([logits[i, index[r.chosen]].item() for i, r in enumerate(pairs)])
    rejected = np.array([logits[i, index[r.rejected]].item() for i, r in enumerate(pairs)])
    delta = (chosen - np.array(refs)[:, 0]) - (rejected - np.array(refs)[:, 1])
    p, w = np.array([r.p for r in pairs]), np.array([r.weight for r in pairs])
    log_sigmoid = lambda x: -np.log1p(np.exp(-x))  # noqa: E731
    per_pair = -p * log_sigmoid(beta * delta) - (1 - p) * log_sigmoid(-beta * delta)
    assert loss == pytest.approx((w * per_pair).sum() / w.sum(), abs=1e-5)


def test_dpo_on_verbalizer_pairs_widens_the_margin(tiny):
    tok, lm = tiny
    soft = np.tile([[0.9, 0.1, 0.0]], (8, 1))  # every example: Negative over Positive, at p = 0.9
    pairs, _ = verbalizer_pairs([f"Review: film number {i}\nAnswer:" for i in range(8)], VERBALIZERS, soft,
                                np.ones(8))
    collator = PreferenceCollator(tok, share_prompt=True)
    pairs = with_reference(lm, collator, pairs)
    batch = collator(pairs)

    def margin() -> float:
        with torch.no_grad():
            chosen, rejected = pair_logprobs(lm, batch)
        return (chosen - rejected).mean().item()

    before = margin()
    module = DPOModule(lm, optimizer=torch.optim.AdamW, beta=0.5)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    module.train()
    for _ in range(8):
        optimizer.zero_grad()
        module._step(batch, "train").backward()
        optimizer.step()
    assert margin() > before + 1.0


def compose_run(tmp_path, name: str, models_dir, *extra, student: str = "gemma3"):
    overrides = [f"student={student}", "student.encoder=tiny-llama", "teachers=lexical", "aggregator=majority",
                 "debug=fast", "logger=none", f"paths.output_dir={tmp_path}/{name}", f"paths.runs_dir={tmp_path}/runs",
                 f"paths.models_dir={models_dir}", "task.sizes.weak_train=40", "task.sizes.w2s_train=24",
                 "task.sizes.val=16", "task.sizes.test=16", "align=verbalizer_dpo", "align.model.optimizer.lr=1e-2",
                 *extra]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_bad_input_is_one_line_before_any_stage(tmp_path, models_dir, tiny):
    from weaks2strong import pipeline
    from weaks2strong.runtime.checks import check_command_line

    encoder = ["student=minilm", "align=verbalizer_dpo", "teachers=lexical", f"paths.runs_dir={tmp_path}/runs"]
    line = ("align=verbalizer_dpo DPOs a causal-LM student's class verbalizers, but student=minilm "
            "(weaks2strong.student.classify) has none to prefer: use student=gemma3, or align=none")
    assert check_command_line(encoder) == line
    assert check_command_line(["student=gemma3", *encoder[1:]]) is None
    cases = [(["task.verbalizers=[Negative]"], "task.verbalizers has 1 entries for 2 classes"),
             (["task.verbalizers=[' ',Positive]"], "task.verbalizers[0] (class 'negative' of task 'sst2') is ' ': "
                                                   "align=verbalizer_dpo needs a word per class to prefer"),
             (["task.verbalizers=[Good,' Good']"], "task.verbalizers[0] and [1] of task 'sst2' are both 'Good'"),
             (["align.init=tf"], "config key 'align.init' must be one of distilled, pretrained, got 'tf'")]
    for extra, said in cases:
        with pytest.raises(UserInputError, match="^[^\n]*$") as err:
            pipeline.run(compose_run(tmp_path, "bad", models_dir, *extra))
        assert said in str(err.value)
    with pytest.raises(UserInputError, match="but student=probe_mpnet .weaks2strong.student.probe. has none to prefer"):
        pipeline.run(compose_run(tmp_path, "bad", models_dir, student="probe_mpnet"))
    assert not (tmp_path / "runs" / ".cache").exists() or not any((tmp_path / "runs" / ".cache").rglob("manifest.json"))
    tok, _ = tiny  # byte tokens: cut at 3, " Posit" and " Positive" are the same " Po"
    task = type("T", (), {"verbalizers": ["Posit", "Positive"]})()
    with pytest.raises(UserInputError, match=r"^task.verbalizers\[0\] 'Posit' and \[1\] 'Positive' are the same 3 "):
        check_completions(task, tok, 3)


@pytest.mark.integration
def test_tf_then_dpo_and_dpo_alone_end_to_end(tmp_path, models_dir, caplog):
    from safetensors.torch import load_file

    from weaks2strong import pipeline
    from weaks2strong.models import predict_proba
    from weaks2strong.pipeline.classification.align import aligned_student
    from weaks2strong.pipeline.classification.distill import fitted_student
    from weaks2strong.pipeline.common import stage
    from weaks2strong.runtime.artifacts import Store

    caplog.set_level(logging.INFO, logger="weaks2strong.pipeline")
    cfg = compose_run(tmp_path, "tf_dpo", models_dir)
    metrics = pipeline.run(cfg)
    for row in ("student", "aligned"):
        assert 0.0 <= metrics[row]["test"]["accuracy"] <= 1.0 and set(metrics[row]) == {"val", "w2s_train", "test"}
    assert set(metrics["pgr_aligned"]["test"]) == {"vs_best_teacher", "vs_aggregate"}
    assert metrics["align"]["init"] == "distilled" and metrics["align"]["label"] == "student + DPO"
    assert metrics["align"]["pairs"] + metrics["align"]["ties_dropped"] == 24
    listed = json.loads((tmp_path / "tf_dpo" / "artifacts.json").read_text())
    align_dir, student_dir, aggregate_dir = (Path(listed[k]) for k in ("align", "student", "aggregate"))
    assert (align_dir / "adapters.safetensors").is_file() and (student_dir / "adapters.safetensors").is_file()
    summary = json.loads((align_dir / "summary.json").read_text())
    assert summary["val_accuracy"] == pytest.approx(metrics["aligned"]["val"]["accuracy"])

    # the cached reference: a fresh forward of the teacher-forced student, rebuilt from its saved adapters
    pairs = pd.read_parquet(align_dir / "pairs.parquet")
    stage.forget_fitted()
    store, dev = Store(cfg.paths.cache_dir), pipeline.build(cfg.task, "task", _convert_="all").without_test()
    student = fitted_student(dev, store.find("aggregate", aggregate_dir.name), store.find("student", student_dir.name),
                             cfg)
    assert load_file(student_dir / "adapters.safetensors").keys() <= student.module.lm.state_dict().keys()
    rows = [CandidateRow(p, list(dev.verbalizers), [0.5, 0.5]) for p in pairs["prompt"]]
    with torch.no_grad():
        logits = student.module.batch_logits(CandidateCollator(student.tokenizer, 256, 8, every_candidate=True)(rows))
    index = {v: k for k, v in enumerate(dev.verbalizers)}
    fresh = np.array([[logits[i, index[c]].item(), logits[i, index[r]].item()]
                      for i, (c, r) in enumerate(zip(pairs["chosen"], pairs["rejected"]))])
    np.testing.assert_allclose(pairs[["ref_chosen", "ref_rejected"]].to_numpy(), fresh, atol=1e-4)
    # the aligned student rebuilt from the adapters it saved predicts val as it did when it was trained
    aligned = aligned_student(dev, store.find("aggregate", aggregate_dir.name), store.find("student", student_dir.name),
                              store.find("align", align_dir.name), cfg)
    saved = pd.read_parquet(align_dir / "predictions.parquet").query("split == 'val'").filter(regex=r"^p_\d+$")
    np.testing.assert_allclose(predict_proba(aligned.module, aligned.predict_loader(dev, "val")).numpy(),
                               saved.to_numpy(), atol=1e-5)

    caplog.clear()
    again = pipeline.run(compose_run(tmp_path, "tf_dpo_again", models_dir))
    said = [r.getMessage() for r in caplog.records if r.name == "weaks2strong.pipeline"]
    assert any(m.startswith("align: reused") for m in said), said
    assert again["aligned"] == metrics["aligned"]  # the aligned student reused: the same numbers

    alone = pipeline.run(compose_run(tmp_path, "dpo_alone", models_dir, "align.init=pretrained"))
    assert alone["align"]["label"] == "DPO alone" and 0.0 <= alone["aligned"]["test"]["accuracy"] <= 1.0
    assert alone["student"] == metrics["student"]  # the teacher-forced row is the same student
