import numpy as np
import pytorch_lightning as pl
import torch
from transformers import AutoTokenizer

from weaks2strong.models import EncoderClassifier, SoftTargetModule
from weaks2strong.student.data.targets import TargetsDataModule
from weaks2strong.zoo import resolve_model


def make_module(path, num_classes, lr=5e-5, warmup_ratio=0.1, dropout=0.1, loss="soft_ce", **net):
    from functools import partial

    from weaks2strong.models.schedules import linear_warmup_decay

    return SoftTargetModule(EncoderClassifier(path, num_classes, dropout=dropout, **net), num_classes,
                            optimizer=partial(torch.optim.AdamW, lr=lr, weight_decay=0.01),
                            scheduler=partial(linear_warmup_decay, warmup_ratio=warmup_ratio), loss=loss)


def test_tiny_student_fits_soft_targets_and_ignores_zero_weights(small_sst2, tmp_path):
    path = resolve_model("tiny-bert", tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = small_sst2.texts("w2s_train")
    n = len(texts)
    targets = np.tile([0.2, 0.8], (n, 1))
    weights = np.ones(n)
    weights[: n // 2] = 0.0  # these rows would pull towards class 0 if they counted
    targets[: n // 2] = [1.0, 0.0]
    data = TargetsDataModule(tokenizer, texts, targets, weights, small_sst2.texts("val"),
                             small_sst2.labels("val"), max_length=48, batch_size=8, seed=0)
    pl.seed_everything(0, verbose=False)
    module = make_module(path, num_classes=2, lr=3e-3, warmup_ratio=0.0, dropout=0.0)
    trainer = pl.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    assert "val/acc" in trainer.callback_metrics  # validation ran on the val split
    probs = torch.cat(trainer.predict(module, data.encode_for_predict(texts))).numpy()
    assert probs.shape == (n, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    # it learned the weighted target (0.8 on class 1), not the zero-weighted one-hot class 0
    assert abs(probs[:, 1].mean() - 0.8) < 0.1


def test_length_buckets_cover_every_row_once_and_depend_on_the_epoch():
    from weaks2strong.models.batching import LengthBucketBatches

    lengths = list(np.random.default_rng(0).integers(1, 60, 203))
    sampler = LengthBucketBatches(lengths, batch_size=8, seed=1, pool=4)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(203)) and len(first) == len(sampler) == 26
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in first])
    assert spread < 15  # batches hold similar lengths (random batches spread over ~50)
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_text_pairs_are_encoded_as_pairs_and_the_longer_member_is_truncated(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("tiny-bert", tmp_path))
    questions = ["is it raining", "does the sun set"]
    passages = ["a very long passage " * 40, "short"]
    data = TargetsDataModule(tokenizer, questions, np.eye(2), np.ones(2), questions, np.array([0, 1]),
                             max_length=32, train_pairs=passages, val_pairs=passages)
    long_row, short_row = data.train.encodings
    assert len(long_row) == 32  # cut to max_length ...
    question_ids = tokenizer(questions[0], add_special_tokens=False).input_ids
    assert long_row[1 : 1 + len(question_ids)] == question_ids  # ... from the passage: the question survives
    sep = tokenizer.sep_token_id
    assert long_row.count(sep) == 2 and short_row.count(sep) == 2  # [CLS] q [SEP] passage [SEP]
    assert short_row == tokenizer(questions[1], passages[1]).input_ids
    loader = data.encode_for_predict(questions, passages)
    assert next(iter(loader))["input_ids"].shape == (2, 32)


def test_truncated_encoder_keeps_only_its_first_layers(tmp_path):
    path = resolve_model("tiny-bert", tmp_path)
    full = EncoderClassifier(path, num_classes=3)
    cut = EncoderClassifier(path, num_classes=3, num_layers=1)
    assert len(full.encoder.encoder.layer) == 2 and len(cut.encoder.encoder.layer) == 1
    torch.testing.assert_close(cut.encoder.encoder.layer[0].state_dict(), full.encoder.encoder.layer[0].state_dict())


def test_length_buckets_split_each_global_batch_between_ddp_ranks():
    from weaks2strong.models.batching import LengthBucketBatches

    lengths = list(np.random.default_rng(0).integers(1, 60, 101))
    single = list(LengthBucketBatches(lengths, batch_size=8, seed=3, pool=4))
    ranks = [LengthBucketBatches(lengths, batch_size=4, seed=3, pool=4, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 13  # every rank takes the same number of steps
    steps = list(zip(*ranks))
    assert [a + b for a, b in steps] == single  # 2 ranks x 4 rows == one process with 8 rows per batch
    assert all(len(a) == len(b) == 4 for a, b in steps[:-1] if len(a + b) == 8)
    tiny = [LengthBucketBatches([5], batch_size=4, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    assert [list(t) for t in tiny] == [[[0]], [[0]]]  # fewer rows than ranks: padded, nobody waits forever
