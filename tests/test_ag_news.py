"""AG News (4 topics) and the keyword-lexicon teacher, on the real shared rows."""
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from weaks2strong.cli import CONFIG_DIR
from weaks2strong.tasks import Task, load_task
from weaks2strong.teachers import TeacherError, check_proba
from weaks2strong.teachers.keywords import KeywordLexicon

CLASSES = ["world", "sports", "business", "sci_tech"]
SIZES = {"weak_train": 2000, "w2s_train": 3000, "test": 2000, "val": 400}


def composed(*overrides):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=["experiment=ag_news", "paths.output_dir=/tmp/unused", *overrides])


@pytest.fixture(scope="module")
def ag_news(mirror):
    return load_task("ag_news", sizes=SIZES, classes=CLASSES, mirror=str(mirror), split_seed=0)


def test_ag_news_splits_are_sized_disjoint_and_balanced(ag_news):
    assert ag_news.sizes() == SIZES and ag_news.classes == CLASSES
    ids = {s: set(ag_news.split(s)["example_id"]) for s in SIZES}
    assert sum(map(len, ids.values())) == len(set().union(*ids.values())) == 7400  # disjoint
    for split, size in SIZES.items():
        counts = np.bincount(ag_news.labels(split), minlength=4)
        assert counts.min() > 0.18 * size and counts.max() < 0.32 * size, (split, counts)  # 1,900 rows per class
    assert "text_pair" not in ag_news.split("val")
    text = ag_news.split("val")["text"]
    assert text.str.contains(r"\. ").all() and not text.str.contains("#39;|&lt;|\\\\", regex=True).any()


def test_ag_news_prompt_and_verbalizers_compose(mirror):
    cfg = composed(f"paths.data_mirror={mirror}")
    assert cfg.teachers.keys() >= {"keywords", "tfidf_lr", "naive_bayes", "minilm2_probe", "smollm2"}
    assert cfg.student.data.max_length == 64
    task = instantiate(cfg.task)
    assert task.sizes() == SIZES and task.verbalizers == ["World", "Sports", "Business", "Technology"]
    assert task.prompts("val")[0].endswith(task.texts("val")[0])


def test_keyword_teacher_abstains_and_is_accurate_where_it_answers(ag_news):
    cfg = composed()
    teacher = instantiate(cfg.teachers.keywords)
    assert all(15 <= len(words) <= 35 for words in cfg.teachers.keywords.keywords.values())
    teacher.fit(ag_news)
    probs = check_proba(teacher.predict_proba(ag_news, "val"), "keywords", "val", 400, 4)
    answered = ~np.isnan(probs).all(1)
    accuracy = (probs[answered].argmax(1) == ag_news.labels("val")[answered]).mean()
    # measured on split_seed 0: coverage 0.66, accuracy 0.89 where it answers
    assert 0.5 < answered.mean() < 0.85
    assert accuracy >= 0.8
    assert probs[answered].max() < 1  # confident, never one-hot


def test_keyword_probabilities_are_smoothed_hit_counts(ag_news):
    teacher = KeywordLexicon({"sports": ["goal", "coach"], "business": ["Wall Street"]}, smoothing=0.1)
    hits = teacher.hits(["The COACH saw a goal.", "wall street rallied", "goalkeeper", "nothing"], CLASSES)
    assert hits.tolist() == [[0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]  # whole words only
    rows = ag_news.split("val").head(3).assign(text=["The coach saw a goal", "Wall Street", "x"])
    task = Task(name="t", classes=CLASSES, splits={"val": rows})
    probs = teacher.predict_proba(task, "val")
    assert np.allclose(probs[0], np.array([0.1, 2.1, 0.1, 0.1]) / 2.4)
    assert np.allclose(probs[1], np.array([0.1, 0.1, 1.1, 0.1]) / 1.4)  # one hit: 0.79, not one-hot
    assert np.isnan(probs[2]).all()


def test_keyword_class_not_in_task_is_one_line_naming_the_key(ag_news):
    teacher = KeywordLexicon({"sports": ["goal"], "science": ["nasa"]})
    with pytest.raises(TeacherError, match=r"^teacher 'keywords': keywords\.science is not a class of task "
                                           r"'ag_news' \(classes: world, sports, business, sci_tech\)$"):
        teacher.fit(ag_news)
