import numpy as np
import pytest

from weaks2strong.teachers import TeacherError, check_proba
from weaks2strong.teachers.classic import NaiveBayes, TfidfLogReg
from weaks2strong.teachers.lexicon import Afinn, TextBlob, Vader
from weaks2strong.teachers.prompted import PromptedLM
from weaks2strong.zoo import ModelError


def test_vader_abstains_where_no_sentiment_word_is_found(small_sst2):
    probs = Vader(abstain_on_neutral=True).predict_proba(small_sst2, "test")
    abstained = np.isnan(probs).all(1)
    assert 0 < abstained.sum() < len(probs)
    assert np.allclose(probs[~abstained].sum(1), 1)
    dense = Vader(abstain_on_neutral=False).predict_proba(small_sst2, "test")
    assert not np.isnan(dense).any() and np.allclose(dense[abstained], 0.5)


def test_tfidf_learns_from_weak_train_only(small_sst2):
    teacher = TfidfLogReg(max_features=5000)
    teacher.fit(small_sst2)
    probs = check_proba(teacher.predict_proba(small_sst2, "test"), "tfidf", "test", 40, 2)
    accuracy = (probs.argmax(1) == small_sst2.labels("test")).mean()
    assert accuracy > 0.5  # 200 real sentences already beat chance on SST-2 dev


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


def test_prompted_lm_prefix_cache_matches_plain_batches(small_sst2, tiny_lm):
    fast = PromptedLM("tiny-llama", batch_size=8, reuse_prefix=True, models_dir=tiny_lm, progress=False)
    plain = PromptedLM("tiny-llama", batch_size=3, reuse_prefix=False, models_dir=tiny_lm, progress=False)
    fast.fit(small_sst2)
    a, b = fast.predict_proba(small_sst2, "test"), plain.predict_proba(small_sst2, "test")
    assert a.shape == (40, 2) and np.allclose(a.sum(1), 1)
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a - a.mean(0)).max() > 1e-4  # not a constant: the inputs matter


def test_prompted_lm_multi_token_verbalizers(small_sst2, tiny_lm):
    small_sst2.verbalizers = [" quite negative", " quite positive"]
    probs = PromptedLM("tiny-llama", batch_size=8, models_dir=tiny_lm, progress=False).predict_proba(small_sst2, "test")
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1)


def test_verbalizer_that_tokenizes_to_nothing(small_sst2, tiny_lm):
    small_sst2.verbalizers = ["", " positive"]
    with pytest.raises(TeacherError, match="verbalizer '' of task 'sst2' tokenizes to nothing"):
        PromptedLM("tiny-llama", models_dir=tiny_lm, progress=False).fit(small_sst2)


def test_unknown_model_name(small_sst2, tiny_lm):
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        PromptedLM("no-such-model", models_dir=tiny_lm, progress=False).fit(small_sst2)


@pytest.mark.parametrize("bad, message", [
    (np.array([[0.5, np.nan]]), "NaN or inf"),
    (np.array([[0.7, 0.7]]), "summing to 1.4000"),
    (np.array([[-0.1, 1.1]]), "negative probability"),
    (np.array([[np.nan, np.nan]]), "abstained on every example"),
])
def test_bad_teacher_output_is_refused(bad, message):
    with pytest.raises(TeacherError, match=message):
        check_proba(bad, "t", "test", 1, 2)


@pytest.mark.parametrize("teacher", [Afinn(), TextBlob()])
def test_other_lexicons_score_real_rows(small_sst2, teacher):
    probs = teacher.predict_proba(small_sst2, "test")
    answered = ~np.isnan(probs).all(1)
    assert 0 < answered.sum() <= len(probs) and np.allclose(probs[answered].sum(1), 1)
    accuracy = (probs[answered].argmax(1) == small_sst2.labels("test")[answered]).mean()
    assert accuracy > 0.5


def test_naive_bayes_learns_from_weak_train(small_sst2):
    teacher = NaiveBayes()
    teacher.fit(small_sst2)
    probs = check_proba(teacher.predict_proba(small_sst2, "test"), "nb", "test", 40, 2)
    assert (probs.argmax(1) == small_sst2.labels("test")).mean() > 0.5


def test_lexicons_refuse_multiclass_tasks(small_sst2):
    small_sst2.classes = ["a", "b", "c"]
    with pytest.raises(TeacherError, match="teacher 'afinn' scores binary sentiment"):
        Afinn().fit(small_sst2)


def test_encoder_probe_with_truncated_tiny_encoder(small_sst2, tiny_lm):
    from weaks2strong.teachers.probe import EncoderProbe

    teacher = EncoderProbe("tiny-bert", num_layers=1, models_dir=tiny_lm, progress=False)
    teacher.fit(small_sst2)
    assert teacher._encoder[1].config.num_hidden_layers == 1
    probs = check_proba(teacher.predict_proba(small_sst2, "test"), "probe", "test", 40, 2)
    assert np.abs(probs - probs.mean(0)).max() > 1e-3  # the embeddings carry the input


def test_k_shot_demonstrations_come_from_weak_train_only(small_sst2, tiny_lm):
    teacher = PromptedLM("tiny-llama", shots=3, models_dir=tiny_lm, progress=False)
    teacher.fit(small_sst2)
    shot_ids = {example_id for _, _, example_id in teacher.shots_}
    assert len(shot_ids) == 3 and shot_ids <= set(small_sst2.splits["weak_train"]["example_id"])
    for split in ("w2s_train", "test"):
        assert not shot_ids & set(small_sst2.splits[split]["example_id"])
    tok, _ = teacher._load()
    rendered = teacher.render(tok, small_sst2.prompts("test")[:1])[0]
    assert all(p in rendered for p, _, _ in teacher.shots_) and rendered.endswith("assistant\n")
    probs = teacher.predict_proba(small_sst2, "test")
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1)


def test_contextual_calibration_divides_by_the_content_free_prior(small_sst2, tiny_lm):
    calibrated = PromptedLM("tiny-llama", calibrate=True, models_dir=tiny_lm, progress=False)
    calibrated.fit(small_sst2)
    plain = PromptedLM("tiny-llama", models_dir=tiny_lm, progress=False)
    raw = plain.predict_proba(small_sst2, "test")
    expected = raw / calibrated.content_free_
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(calibrated.predict_proba(small_sst2, "test"), expected, atol=1e-5)
    assert not np.allclose(calibrated.content_free_, 0.5, atol=1e-4)  # a random LM has a prior to undo


@pytest.fixture
def small_boolq(mirror):
    from weaks2strong.tasks import load_task

    return load_task("boolq", sizes={"weak_train": 24, "val": 8, "w2s_train": 8, "test": 8}, classes=["no", "yes"],
                     mirror=str(mirror))


def test_fine_tuned_encoder_trains_a_truncated_encoder_on_text_pairs(small_boolq, tiny_lm):
    from weaks2strong.teachers.finetuned import FineTunedEncoder

    teacher = FineTunedEncoder("tiny-bert", num_layers=1, epochs=30, lr=3e-3, batch_size=8, max_length=64,
                               accelerator="cpu", models_dir=tiny_lm, progress=False)
    teacher.fit(small_boolq)
    assert len(teacher._module.net.encoder.encoder.layer) == 1
    sep = teacher._data.tokenizer.sep_token_id
    assert all(ids.count(sep) == 2 for ids in teacher._data.train.encodings)  # question and passage as a pair
    probs = check_proba(teacher.predict_proba(small_boolq, "test"), "finetuned", "test", 8, 2)
    assert probs.shape == (8, 2)
    fitted = teacher.predict_proba(small_boolq, "weak_train")  # it fitted the gold it was trained on
    assert (fitted.argmax(1) == small_boolq.labels("weak_train")).mean() >= 0.75


@pytest.mark.integration
def test_fine_tuned_minilm_beats_chance_on_real_sst2(small_sst2, models_dir):
    from weaks2strong.teachers.finetuned import FineTunedEncoder

    teacher = FineTunedEncoder("minilm-l6", num_layers=2, epochs=3, max_length=64, accelerator="cpu",
                               models_dir=str(models_dir), progress=False)
    teacher.fit(small_sst2)
    probs = check_proba(teacher.predict_proba(small_sst2, "test"), "finetuned", "test", 40, 2)
    assert (probs.argmax(1) == small_sst2.labels("test")).mean() >= 0.6  # 0.675 measured; chance 0.5
