"""The frozen-feature student (``student=probe_mpnet``): a head over cached encoder features, trained by
``SoftTargetModule`` with the fine-tuned students' losses. Tiny-bert stands in for mpnet."""
from functools import partial

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from weaks2strong.models import SoftTargetModule, predict_proba
from weaks2strong.models.feature_head import FeatureHead
from weaks2strong.runtime.example_cache import ExampleCache
from weaks2strong.student import StudentParts, fit_probe, fit_probe_on_val, probe
from weaks2strong.student.data.features import FeaturesDataModule
from weaks2strong.student.probe import FeatureEncoder, probe_module
from weaks2strong.tasks import Task
from weaks2strong.zoo import resolve_model

TEXTS = ["a fine film", "dull and far too long", "I loved every minute", "a mess", "warm, funny, wise",
         "nothing works here", "the best of the year", "skip it"]


@pytest.fixture
def tiny(models_dir):
    return resolve_model("tiny-bert", models_dir)


def rows(texts, start=0):
    return pd.DataFrame({"example_id": range(start, start + len(texts)), "text": texts,
                         "label": [i % 2 for i in range(len(texts))]})


class FirstStep(pl.Callback):
    """The first training batch, the head's parameters before its update, and the loss it gave."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0:
            self.batch = {k: v.clone() for k, v in batch.items()}
            self.weight, self.bias = module.net.out.weight.detach().clone(), module.net.out.bias.detach().clone()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            self.loss = outputs["loss"].item()


def first_step_loss(features, soft, weights, loss, **module_kwargs) -> FirstStep:
    pl.seed_everything(0, verbose=False)
    data = FeaturesDataModule(features, soft, weights, features, soft.argmax(1), batch_size=len(features))
    module = probe_module(data.in_dim, data.num_classes, lr=1e-2, weight_decay=0.0, loss=loss, **module_kwargs)
    seen = FirstStep()
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0, callbacks=[seen]).fit(module, datamodule=data)
    return seen


def hand_soft_ce(x, q, w, weight, bias):
    logits = x @ weight.T + bias  # (B, K)
    log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, K)
    return float((w * -(q * log_p).sum(1)).sum() / w.sum())


def test_loss_on_tiny_encoder_features_equals_a_hand_computation(tiny, tmp_path):
    features = FeatureEncoder(tiny, tmp_path, progress=False)(TEXTS)  # (8, 32)
    soft = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9], [0.7, 0.3], [0.3, 0.7], [1.0, 0.0]])
    weights = np.array([1.0, 0.5, 0.0, 2.0, 1.0, 0.25, 1.0, 0.75])

    seen = first_step_loss(features, soft, weights, "soft_ce")
    x, q, w = seen.batch["features"], seen.batch["targets"], seen.batch["weights"]
    assert x.shape == (8, 32) and sorted(w.tolist()) == sorted(weights.tolist())  # the whole (shuffled) batch
    assert seen.loss == pytest.approx(hand_soft_ce(x, q, w, seen.weight, seen.bias), rel=1e-5)

    # logconf at α = 0.5 from the first step (no warm-up): the targets mixed with the student's own
    # predictions, hardened at the threshold that gives the targets' class balance
    seen = first_step_loss(features, soft, weights, "logconf", aux_coef=0.5, aux_warmup_frac=0.0)
    x, q, w = seen.batch["features"], seen.batch["targets"], seen.batch["weights"]
    p0 = (x @ seen.weight.T + seen.bias).softmax(1)[:, 0]  # (B,)
    first = (p0 >= torch.quantile(p0, q[:, 1].mean())).float()  # (B,) rows hardened to class 0
    mixed = 0.5 * q + 0.5 * torch.stack([first, 1 - first], dim=1)  # (B, 2)
    assert seen.loss == pytest.approx(hand_soft_ce(x, mixed, w, seen.weight, seen.bias), rel=1e-5)
    assert seen.loss != pytest.approx(hand_soft_ce(x, q, w, seen.weight, seen.bias), rel=1e-3)


def test_features_are_cached_per_example_and_computed_once(tiny, tmp_path):
    encoder = FeatureEncoder(tiny, tmp_path, progress=False)
    first = encoder(rows(TEXTS[:5]))
    assert first.shape == (5, 32) and encoder.last_computed == 5

    # the same examples under other ids and labels (another split seed): nothing to compute
    again = encoder(rows(TEXTS[:5], start=100).assign(label=1))
    assert encoder.last_computed == 0 and np.array_equal(again, first)

    # a superset: only the new rows are encoded
    six = encoder(rows(TEXTS[:6]))
    assert encoder.last_computed == 1 and np.array_equal(six[:5], first)
    # another encoder (the ceiling's recipe, another process) reads those from disk and adds the rest,
    # which the first one then finds too
    other = FeatureEncoder(tiny, tmp_path, progress=False)
    superset = other(rows(TEXTS))
    assert other.last_computed == 2 and np.array_equal(superset[:6], six)
    assert np.array_equal(encoder(rows(TEXTS)), superset) and encoder.last_computed == 0

    # cached values are the mean-pooled hidden states (a row encoded alone: no padding)
    from transformers import AutoModel, AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(tiny)(TEXTS[2], return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(tiny)(**tokens).last_hidden_state  # (1, T, 32)
    np.testing.assert_allclose(superset[2], hidden[0].mean(0).numpy(), atol=1e-5)

    # another max_length is another cache
    shorter = FeatureEncoder(tiny, tmp_path, max_length=8, progress=False)
    assert shorter.namespace != encoder.namespace
    shorter(rows(TEXTS[:2]))
    assert shorter.last_computed == 2


def separable(n, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4 * n, dim))
    x = x[np.abs(x[:, 0]) > 0.5][:n]  # a margin around the separating plane x_0 = 0
    y = (x[:, 0] > 0).astype(np.int64)
    return x, y


def test_fit_probe_learns_a_separable_problem_and_the_grid_keeps_the_first_best(tmp_path):
    train_x, train_y = separable(400, seed=0)
    val_x, val_y = separable(100, seed=1)
    soft = np.where(np.eye(2)[train_y] == 1, 0.9, 0.1)  # confident, not one-hot
    weights = np.ones(len(train_x))

    module, val_acc = fit_probe(train_x, soft, weights, val_x, val_y, lr=5e-2, weight_decay=0.0, max_epochs=20,
                                hidden=0, seed=0)
    assert val_acc == 1.0 and isinstance(module.net, FeatureHead)

    # lr 1e-6 leaves the random head as it started; 5e-2 and 1e-1 both separate: the first of the two wins
    choice = fit_probe_on_val(train_x, soft, weights, val_x, val_y, grid={"lr": [1e-6, 5e-2, 1e-1]},
                              weight_decay=0.0, max_epochs=20, seed=0)
    assert [acc for _, acc in choice.tried][1:] == [1.0, 1.0] and choice.tried[0][1] < 1.0
    assert choice.setting == {"lr": 5e-2} and choice.val_acc == 1.0
    assert choice.module.optimizer_factory.keywords["lr"] == 5e-2


def toy_task() -> Task:
    splits = {"weak_train": rows(TEXTS[:2]), "w2s_train": rows(TEXTS[:6]), "val": rows(TEXTS[4:8], start=10),
              "test": rows(TEXTS[3:8] + ["an unseen row"], start=20)}
    return Task(name="toy", classes=["negative", "positive"], splits=splits)


def test_recipe_returns_parts_that_predict_probabilities_for_any_split(tiny, tmp_path):
    task = toy_task()
    soft = np.tile([0.3, 0.7], (6, 1))
    model = partial(SoftTargetModule, optimizer=partial(torch.optim.AdamW, lr=1e-2), loss="soft_ce")
    parts = probe(task, soft, np.ones(6), tiny, model, partial(FeaturesDataModule, batch_size=4),
                  {"hidden": 16, "dropout": 0.0}, seed=0, cache_dir=tmp_path, encode_batch_size=3)
    assert isinstance(parts, StudentParts) and parts.module.net.out.in_features == 16
    pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0).fit(parts.module, datamodule=parts.data)
    probs = predict_proba(parts.module, parts.predict_loader(task, "test")).numpy()
    assert probs.shape == (6, 2) and np.allclose(probs.sum(1), 1, atol=1e-6)

    # every split's rows went through the per-example cache (w2s_train ∪ val ∪ test: 9 distinct texts)
    cached = [s for s in tmp_path.glob("examples/*/*.parquet")]
    assert cached and len(pd.concat(map(pd.read_parquet, cached))) == 9


def test_recipe_chooses_the_optimizer_on_val_when_given_a_grid(tiny, tmp_path):
    task = toy_task()
    soft = np.eye(2)[task.labels("w2s_train")]
    model = partial(SoftTargetModule, optimizer=partial(torch.optim.AdamW, lr=5e-3, weight_decay=0.0))
    parts = probe(task, soft, np.ones(6), tiny, model, partial(FeaturesDataModule, batch_size=4),
                  {"hidden": 0, "dropout": 0.0}, cache_dir=tmp_path, grid={"lr": [1e-3, 1e-2]}, select_epochs=2)
    chosen = parts.module.optimizer_factory.keywords
    assert chosen["lr"] in (1e-3, 1e-2) and chosen["weight_decay"] == 0.0


def test_build_student_hands_the_store_root_to_the_probe_recipe(tiny, models_dir, tmp_path):
    from hydra import compose, initialize_config_dir

    from weaks2strong.cli import CONFIG_DIR
    from weaks2strong.pipeline.classification.distill import build_classifier_student

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["student=probe_mpnet", "student.encoder=tiny-bert", "trainer.max_epochs=2",
                                           f"paths.models_dir={models_dir}", f"paths.cache_dir={tmp_path}"])
    parts = build_classifier_student(toy_task().without_test(), None, cfg)  # the ceiling: one-hot gold
    assert isinstance(parts.data, FeaturesDataModule) and parts.data.in_dim == 32
    cache = ExampleCache(tmp_path, FeatureEncoder(tiny).namespace, 32)
    _, computed = cache.fill(rows(TEXTS), lambda todo: pytest.fail("w2s_train and val were not cached"))
    assert computed == 0
