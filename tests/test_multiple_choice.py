"""The multiple-choice student: one score per (context + question, option) pair, on real CosmosQA rows."""
from functools import partial

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from transformers import AutoTokenizer

from weaks2strong.models import SoftTargetModule, predict_proba
from weaks2strong.models.multiple_choice import EncoderMultipleChoice
from weaks2strong.models.schedules import linear_warmup_decay
from weaks2strong.student.data.choices import ChoicesDataModule
from weaks2strong.tasks import Task, TaskError, load_task
from weaks2strong.zoo import resolve_model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return resolve_model("tiny-bert", tmp_path_factory.mktemp("zoo"))  # built from its config: random weights


@pytest.fixture(scope="module")
def cosmos(mirror):
    return load_task("cosmosqa", sizes={"weak_train": 8, "w2s_train": 24, "test": 8, "val": 8}, mirror=str(mirror),
                     classes=["A", "B", "C", "D"], prompt="{text}\n\n{text_pair}\nAnswer:", verbalizers=list("ABCD"))


def choices_data(path, task, max_length=96, batch_size=8, targets=None):
    firsts, options = task.choice_inputs("w2s_train")
    val_firsts, val_options = task.choice_inputs("val")
    targets = np.eye(4)[task.labels("w2s_train")] if targets is None else targets
    return ChoicesDataModule(AutoTokenizer.from_pretrained(path), firsts, options, targets, np.ones(len(firsts)),
                             val_firsts, val_options, task.labels("val"), max_length=max_length,
                             batch_size=batch_size, seed=0)


def test_cosmosqa_rows_keep_the_lettered_pair_and_add_the_options(cosmos):
    df = cosmos.split("w2s_train")
    firsts, options = cosmos.choice_inputs("w2s_train")
    assert len(firsts) == len(options) == 24 and all(len(o) == 4 for o in options)
    assert firsts[0] == f"{df['text'][0]} {df['question'][0]}"
    # the teachers' and the prompt's view is unchanged: question and lettered options in text_pair
    assert options[0][2] in df["text_pair"][0].split("\nC) ")[1]
    assert cosmos.texts("w2s_train")[0] == df["text"][0] + "\n" + df["text_pair"][0]
    assert cosmos.prompts("w2s_train")[0] == f"{df['text'][0]}\n\n{df['text_pair'][0]}\nAnswer:"


def test_a_task_without_options_has_no_choice_inputs():
    task = Task("plain", ["neg", "pos"], {"val": pd.DataFrame({"example_id": ["0"], "text": ["ok"], "label": [1]})})
    with pytest.raises(TaskError, match="task plain has no column 'question' for a multiple-choice student"):
        task.choice_inputs("val")


def test_head_gives_one_logit_per_option(tiny_bert):
    net = EncoderMultipleChoice(tiny_bert, dropout=0.0).eval()
    input_ids = torch.randint(5, 100, (3, 4, 10))  # (B, C, T)
    mask = torch.ones_like(input_ids)
    mask[:, :, 7:] = 0  # padding
    logits = net(input_ids, mask)
    assert logits.shape == (3, 4)  # (B, C)
    # each option is scored alone: changing one option's tokens changes only its logit
    changed = input_ids.clone()
    changed[:, 1, 2] += 1
    delta = (net(changed, mask) - logits).abs()
    assert delta[:, 1].min() > 0 and torch.allclose(delta[:, [0, 2, 3]], torch.zeros(3, 3))


def test_permuting_the_options_permutes_the_logits(tiny_bert, cosmos):
    data = choices_data(tiny_bert, cosmos)
    net = EncoderMultipleChoice(tiny_bert, dropout=0.0).eval()
    firsts, options = cosmos.choice_inputs("val")
    perm = [2, 0, 3, 1]
    batch = next(iter(data.encode_for_predict(firsts, options)))
    shuffled = next(iter(data.encode_for_predict(firsts, [[row[j] for j in perm] for row in options])))
    assert batch["input_ids"].shape[:2] == (8, 4)  # (B, C, T)
    with torch.no_grad():
        logits = net(batch["input_ids"], batch["attention_mask"])  # (B, C)
        permuted = net(shuffled["input_ids"], shuffled["attention_mask"])
    assert torch.allclose(permuted, logits[:, perm], atol=1e-5)


def test_an_over_long_context_is_cut_from_the_left_so_the_question_stays(tiny_bert):
    firsts = ["once upon a time " * 40 + "Why did she leave ?"]
    options = [["She was bored .", "He left .", "It rained .", "None of the above choices ."]]
    data = ChoicesDataModule(AutoTokenizer.from_pretrained(tiny_bert), firsts, options, np.eye(4)[[0]], np.ones(1),
                             firsts, options, np.array([0]), max_length=64)
    rows = data.train.encodings[0]  # C token-id lists
    assert len(rows) == 4 and max(len(r) for r in rows) == 64
    decoded = data.tokenizer.decode(rows[3])
    assert "Why did she leave ?" in decoded and decoded.endswith("None of the above choices .</s>")
    assert data.tokenizer.truncation_side == "right"  # the tokenizer is left as it came


def test_train_batches_bucket_by_the_longest_option_and_split_between_ddp_ranks(tiny_bert, cosmos):
    from types import SimpleNamespace

    data = choices_data(tiny_bert, cosmos, batch_size=4)
    whole = [b for b in data.train_dataloader().batch_sampler]
    shards = []
    for rank in (0, 1):
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        shards.append([b for b in data.train_dataloader().batch_sampler])
    data.trainer = None
    assert sorted(i for b in whole for i in b) == list(range(24))
    # each global batch of 2 x 4 rows is split between the two ranks; together they see every row once
    assert len(shards[0]) == len(shards[1]) == 3 and all(len(b) == 4 for s in shards for b in s)
    assert sorted(i for s in shards for b in s for i in b) == list(range(24))
    batch = data._collate([data.train[i] for i in whole[0]])
    longest = max(len(x) for i in whole[0] for x in data.train.encodings[i])
    assert batch["input_ids"].shape == (4, 4, longest) and batch["targets"].shape == (4, 4)


@pytest.mark.integration
def test_tiny_student_fits_one_hot_targets_on_real_rows(tiny_bert, cosmos):
    data = choices_data(tiny_bert, cosmos, max_length=64, batch_size=4)
    pl.seed_everything(0, verbose=False)
    module = SoftTargetModule(EncoderMultipleChoice(tiny_bert, dropout=0.0), 4,
                              optimizer=partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.0),
                              scheduler=partial(linear_warmup_decay, warmup_ratio=0.0))
    loader = data.encode_for_predict(*cosmos.choice_inputs("w2s_train"))
    labels = torch.tensor(cosmos.labels("w2s_train"))

    def fit_to_gold():
        probs = predict_proba(module, loader)  # (N, C)
        return torch.nn.functional.nll_loss(probs.log(), labels).item(), (probs.argmax(1) == labels).float().mean()

    before, _ = fit_to_gold()
    trainer = pl.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    after, accuracy = fit_to_gold()
    assert "val/acc" in trainer.callback_metrics  # validation ran on val's gold
    # 24 rows of 4 options: from chance (-log 1/4 = 1.39) to fitted (seed 0: 1.38 -> 0.17, 22 of 24 right)
    assert after < before / 3 and accuracy >= 0.8, (before, after, accuracy)


@pytest.mark.integration
def test_cosmosqa_experiment_runs_the_multiple_choice_student_end_to_end(tmp_path):
    import json

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from safetensors.torch import load_file

    from weaks2strong import pipeline
    from weaks2strong.cli import CONFIG_DIR

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):  # the cheap reading teachers, a tiny student
        cfg = compose("config", return_hydra_config=True, overrides=[
            "experiment=cosmosqa", "debug=fast", "logger=csv", "student.encoder=tiny-bert",
            "~teachers.minilm2_probe", "~teachers.smollm2", "~teachers.minilm2_finetuned",
            f"paths.runs_dir={tmp_path}/runs", f"paths.output_dir={tmp_path}/run"])
    HydraConfig.instance().set_config(cfg)
    assert cfg.student.recipe._target_ == "weaks2strong.student.multiple_choice"
    metrics = pipeline.run(cfg)
    artifacts = json.loads((tmp_path / "run" / "artifacts.json").read_text())
    import pandas as pd

    from weaks2strong.tasks import load_task

    gold = load_task(**{k: v for k, v in cfg.task.items() if k != "_target_"}).split("test").set_index("example_id")
    for model in ("ceiling", "student"):
        assert set(metrics[model]) == {"w2s_train", "val", "test"}  # test predicted by the trained MC head
        rows = pd.read_parquet(f"{artifacts['predict_test'][model]}/predictions.parquet").set_index("example_id")
        hits = rows[["p_0", "p_1", "p_2", "p_3"]].to_numpy().argmax(1) == gold.loc[rows.index, "label"].to_numpy()
        assert len(rows) == 96 and metrics[model]["test"]["accuracy"] == pytest.approx(hits.mean())
    weights = load_file(f"{artifacts['student']}/model.safetensors")
    assert weights["net.head.1.weight"].shape == (1, 32)  # one score per option (tiny-bert's hidden size 32)
