"""Tests of the Bayesian Dawid-Skene aggregator (weaks2strong.aggregate.bayes), its crowd-table
conversions, its command line and its plots. Synthetic data are generated here with known truth;
the crowd-kit comparison uses the shared dog data set (skipped when it is not mirrored)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from weaks2strong.aggregate.base import AggregatorError
from weaks2strong.aggregate.bayes import BayesianDawidSkene
from weaks2strong.aggregate.io.cli import main as cli_main
from weaks2strong.aggregate.io.crowd import long_to_probs, probs_to_table, table_to_long

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("W2S_DATA_MIRROR", REPO.parent / "shared" / "datasets"))
DOG = DATA / "crowd" / "dog"

FAST = dict(progress=False, steps=200)


# ------------------------------------------------------------------------------------ data


def hard_votes(n, confusion, pi, seed=0, abstain=0.0):
    """One-hot (N, T, K) votes drawn from known confusions; returns (probs, truth)."""
    rng = np.random.default_rng(seed)
    t, k, _ = confusion.shape
    z = rng.choice(k, size=n, p=pi)  # (N,)
    cum = confusion[:, z].cumsum(-1)  # (T, N, K)
    vote = (rng.random((t, n, 1)) > cum).sum(-1).T  # (N, T)
    vote = np.minimum(vote, k - 1)
    probs = np.eye(k)[vote]  # (N, T, K)
    probs[rng.random((n, t)) < abstain] = np.nan
    return probs, z


def confusion_matrix(accuracies, k, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for acc in accuracies:
        rows = []
        for z in range(k):
            off = rng.dirichlet(np.ones(k - 1)) * (1 - acc)
            rows.append(np.insert(off, z, acc))
        out.append(rows)
    return np.array(out)  # (T, K, K)


def difficulty_data(n, seed=0, t=5, hard_share=0.3):
    """Binary task where 30% of examples are hard: every teacher guesses, hesitantly."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)  # (N,)
    hard = rng.random(n) < hard_share  # (N,)
    p_right = np.where(hard, 0.5, 0.85)[:, None]  # (N, 1)
    right = rng.random((n, t)) < p_right  # (N, T)
    vote = np.where(right, z[:, None], 1 - z[:, None])
    top = np.where(hard[:, None], rng.uniform(0.5, 0.65, (n, t)), rng.uniform(0.7, 1.0, (n, t)))
    probs = np.empty((n, t, 2))
    probs[..., 1] = np.where(vote == 1, top, 1 - top)
    probs[..., 0] = 1 - probs[..., 1]
    return probs, z, hard


# ------------------------------------------------------------------------------------ model


def test_recovers_known_confusions():
    truth = confusion_matrix([0.9, 0.8, 0.7, 0.6], k=3, seed=1)
    probs, z = hard_votes(4000, truth, pi=[0.5, 0.3, 0.2], seed=2, abstain=0.1)
    model = BayesianDawidSkene(soft_bins=1, difficulty=False, **FAST).fit(probs)
    assert model.stride_ == 1  # hard votes: one bin, classic Dawid-Skene answers
    agg = model.predict(probs)
    for j, name in enumerate(model.teacher_names_):
        est = np.array(model.teachers_[name]["confusion"])
        assert np.abs(est - truth[j]).max() < 0.05, (name, est, truth[j])
        acc_true = float((np.array([0.5, 0.3, 0.2]) * np.diagonal(truth[j])).sum())
        assert abs(model.teachers_[name]["accuracy"] - acc_true) < 0.03
        low, high = np.array(model.teachers_[name]["confusion_low"]), np.array(model.teachers_[name]["confusion_high"])
        assert (low <= est).all() and (est <= high).all()
    mv = np.nansum(probs, 1).argmax(1)
    assert (agg.posterior.argmax(1) == z).mean() > (mv == z).mean() + 0.01
    np.testing.assert_allclose(agg.posterior.sum(1), 1.0, atol=1e-6)


def test_difficulty_model_recovers_accuracies_too():
    truth = confusion_matrix([0.9, 0.8, 0.75, 0.7, 0.65], k=2, seed=3)  # 5: DS is well identified
    probs, z = hard_votes(3000, truth, pi=[0.6, 0.4], seed=4)
    model = BayesianDawidSkene(**FAST).fit(probs)
    for j, name in enumerate(model.teacher_names_):
        acc_true = float((np.array([0.6, 0.4]) * np.diagonal(truth[j])).sum())
        assert abs(model.teachers_[name]["accuracy"] - acc_true) < 0.03


def _brute_force(model, probs, gold=None):
    """Posterior over (z, d) by Bayes' rule in numpy from the fitted globals, one example at a time.

    An abstention is the last answer when the model keeps abstentions as evidence and the teacher
    abstained while fitting; otherwise it contributes no factor. ``gold`` (-1 = unknown) clamps z."""
    g = {k: v.double().cpu().numpy() for k, v in model.globals_.items()}
    pi, conf, guess, lam = g["pi"], g["confusion"], g["guess"], model.lam_
    rho = g["rho"] if len(lam) > 1 else np.ones(1)
    k = probs.shape[2]
    post, diff = np.zeros((len(probs), k)), np.zeros(len(probs))
    for i in range(len(probs)):
        joint = np.zeros((k, len(lam)))
        for zz in range(k):
            for d in range(len(lam)):
                p = pi[zz] * rho[d]
                if gold is not None and gold[i] >= 0 and gold[i] != zz:
                    continue  # observed class: the other classes have probability zero
                for t in range(probs.shape[1]):
                    row = probs[i, t]
                    if np.isnan(row).all():
                        if conf.shape[-1] > k * model.stride_ and model._used[t, -1]:
                            a = conf.shape[-1] - 1  # abstained: an answer of its own
                            p *= (1 - lam[d]) * conf[t, zz, a] + lam[d] * guess[t, a]
                        continue  # a teacher that never abstained while fitting: no factor
                    edges = model.edges_[t]
                    b = int((edges < row.max()).sum())  # bin j holds edge[j-1] < v <= edge[j]
                    a = int(row.argmax()) * model.stride_ + b
                    p *= (1 - lam[d]) * conf[t, zz, a] + lam[d] * guess[t, a]
                joint[zz, d] = p
        joint /= joint.sum()
        post[i] = joint.sum(1)
        diff[i] = joint.sum(0) @ lam
    return post, diff


def test_enumerated_posterior_equals_brute_force():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([1.0, 1.0], size=(60, 3))  # (N, T, K) soft outputs
    probs[3, 1] = np.nan  # abstentions
    probs[7, :2] = np.nan
    model = BayesianDawidSkene(soft_bins=2, difficulty_levels=3, progress=False, steps=40).fit(probs[:40])
    assert model.stride_ == 2
    new = probs[40:]  # held out: predicting new examples with the fitted globals
    for batch in (probs[:40], new):
        agg = model.predict(batch)
        post, diff = _brute_force(model, batch)
        np.testing.assert_allclose(agg.posterior, post, atol=2e-5)
        np.testing.assert_allclose(agg.difficulty, diff, atol=2e-5)


def test_reproducible_under_seed():
    truth = confusion_matrix([0.85, 0.7, 0.6], k=2, seed=6)
    probs, _ = hard_votes(3000, truth, pi=[0.5, 0.5], seed=7)
    kw = dict(batch_size=500, steps=60, init_em=3, progress=False, seed=11)  # minibatches: randomness matters
    a = BayesianDawidSkene(**kw).fit(probs).predict(probs)
    b = BayesianDawidSkene(**kw).fit(probs).predict(probs)
    assert np.array_equal(a.posterior, b.posterior)
    assert np.array_equal(a.difficulty, b.difficulty)
    assert a.teachers == b.teachers


def test_plain_mode_is_dawid_skene_map():
    """soft_bins=1, difficulty=False, fitted by SVI alone, lands on the MAP that EM finds."""
    truth = confusion_matrix([0.85, 0.7, 0.65, 0.6], k=2, seed=8)
    probs, _ = hard_votes(600, truth, pi=[0.7, 0.3], seed=9)
    s, w, c = 2.0, 0.7, 2.0  # prior pseudo-counts: s per confusion row (w of it on the diagonal), c on pi
    model = BayesianDawidSkene(soft_bins=1, difficulty=False, prior_strength=s, prior_diag=w, class_prior=c,
                               init_em=0, steps=3000, lr=0.05, tol=1e-9, lr_decays=3, precision="float64",
                               progress=False).fit(probs)  # float64: the mode is flat along the minority row
    # reference: Dawid & Skene's EM with the same Dirichlet priors, in numpy
    vote = np.nan_to_num(probs)  # (N, T, K) one-hot, zeros where abstained
    q = vote.sum(1) / vote.sum((1, 2))[:, None]  # majority-vote start
    prior = np.where(np.eye(2, dtype=bool), s * w, s * (1 - w))  # (K, K) pseudo-counts
    for _ in range(500):
        conf = np.einsum("iz,ita->tza", q, vote) + prior
        conf /= conf.sum(-1, keepdims=True)
        pi = q.sum(0) + c / 2
        pi /= pi.sum()
        logq = np.log(pi) + np.einsum("ita,tza->iz", vote, np.log(conf))
        q = np.exp(logq - logq.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
    got = model.globals_["confusion"].double().numpy()
    np.testing.assert_allclose(got, conf, atol=1e-3)
    np.testing.assert_allclose(model.predict_proba(probs), q, atol=1e-3)


def test_unsure_agreeing_example_is_harder_and_less_confident():
    probs, z, hard = difficulty_data(3000, seed=10)
    model = BayesianDawidSkene(**FAST).fit(probs)
    agg = model.predict(probs)
    assert agg.difficulty[hard].mean() > agg.difficulty[~hard].mean() + 0.1
    unsure = np.tile([0.58, 0.42], (1, 5, 1))  # all five say class 0, hesitantly
    sure = np.tile([0.95, 0.05], (1, 5, 1))  # all five say class 0, confidently
    new = model.predict(np.concatenate([unsure, sure]))
    assert new.posterior[:, 0].min() > 0.5  # both still lean to the agreed class
    assert new.difficulty[0] > new.difficulty[1] + 0.2
    assert new.confidence[0] < new.confidence[1] - 0.05
    plain = BayesianDawidSkene(difficulty=False, **FAST).fit(probs).predict(np.concatenate([unsure, sure]))
    assert np.array_equal(plain.difficulty, np.zeros(2))
    # the difficulty mixture pulls the unsure example towards the prior beyond what soft bins alone do
    assert new.confidence[0] < plain.confidence[0]


def test_predicts_new_split_with_learned_globals():
    truth = confusion_matrix([0.8, 0.75, 0.7, 0.65, 0.6], k=2, seed=12)
    probs, z = hard_votes(3000, truth, pi=[0.5, 0.5], seed=13)
    model = BayesianDawidSkene(**FAST).fit(probs[:2000])
    held = model.predict(probs[2000:]).posterior.argmax(1)
    seen = model.predict(probs[:2000]).posterior.argmax(1)
    assert abs((held == z[2000:]).mean() - (seen == z[:2000]).mean()) < 0.04
    # a teacher silent on the whole new split is fine at prediction time
    quiet = probs[2000:].copy()
    quiet[:, 4] = np.nan
    assert model.predict(quiet).posterior.shape == (1000, 2)


# ------------------------------------------------------------------------------------ crowd


@pytest.mark.skipif(not (DOG / "answer.csv").exists(), reason=f"dog crowd data not found under {DATA}")
def test_agrees_with_crowdkit_dawid_skene_on_dog():
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    answers = pd.read_csv(DOG / "answer.csv").rename(columns={"question": "task", "answer": "label"})
    truth = pd.read_csv(DOG / "truth.csv").set_index("question")["truth"]
    ds = crowdkit.DawidSkene(n_iter=100).fit_predict(answers)
    plain = BayesianDawidSkene(soft_bins=1, difficulty=False, progress=False).fit_predict_table(answers)[0]
    plain = plain.idxmax(axis=1)
    full = BayesianDawidSkene(progress=False).fit_predict_table(answers)[0].idxmax(axis=1)
    # tolerances: plain mode is DS with a weak prior -> >= 98% same labels; the difficulty model may
    # move hard tasks -> >= 95%; neither may be more than half a point less accurate than DS
    assert (plain.reindex(ds.index) == ds).mean() >= 0.98
    assert (full.reindex(ds.index) == ds).mean() >= 0.95
    acc = lambda labels: (labels.reindex(truth.index) == truth).mean()  # noqa: E731
    assert acc(plain) >= acc(ds) - 0.005
    assert acc(full) >= acc(ds) - 0.005


def test_table_round_trip_and_prediction_on_table():
    df = pd.DataFrame({"task": ["a", "a", "b", "b", "c", "c", "c"],
                       "worker": ["w1", "w2", "w1", "w3", "w2", "w3", "w1"],
                       "label": ["x", "x", "y", "y", "x", "y", "x"]})
    labels = table_to_long(df)
    assert labels.classes == ["x", "y"] and labels.shape == (3, 3, 2)
    probs = long_to_probs(labels)  # (3, 3, 2)
    assert np.isnan(probs[0, 2]).all() and probs[2, 2].tolist() == [0.0, 1.0]
    back = probs_to_table(probs, labels.tasks, labels.workers, labels.classes)
    assert sorted(map(tuple, back.to_numpy())) == sorted(map(tuple, df.to_numpy()))
    model = BayesianDawidSkene(progress=False, steps=30).fit_table(df)
    frame = model.predict_proba_table(df)
    assert list(frame.columns) == ["x", "y"] and list(frame.index) == ["a", "b", "c"]
    assert frame.loc["a", "x"] > 0.5 and frame.loc["b", "y"] > 0.5


# ------------------------------------------------------------------------------------ bad input


def _good(n=20, t=3, k=2):
    return np.random.default_rng(0).dirichlet(np.ones(k), size=(n, t))


def _with(fn):
    p = _good()
    fn(p)
    return p


BAD_ARRAYS = {
    "partial NaN": (_with(lambda p: p.__setitem__((2, 1, 0), np.nan)), "NaN"),
    "negative": (_with(lambda p: p.__setitem__((4, 0), [1.2, -0.2])), "negative"),
    "not summing to one": (_with(lambda p: p.__setitem__((5, 2), [0.5, 0.2])), "sum to"),
    "silent teacher": (_with(lambda p: p.__setitem__((slice(None), 1), np.nan)), "no labels"),
    "single teacher": (_good(t=1), "at least two teachers"),
    "one class": (np.ones((5, 3, 1)), "two classes"),
    "empty": (np.zeros((0, 3, 2)), "empty"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_arrays_raise_one_line(case):
    probs, needle = BAD_ARRAYS[case]
    with pytest.raises(AggregatorError, match=needle) as err:
        BayesianDawidSkene(progress=False, steps=5).fit(probs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "case, df, kw, needle",
    [
        ("empty table", pd.DataFrame({"task": [], "worker": [], "label": []}), {}, "empty"),
        ("class outside classes", pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [0, 1, 2]}),
         {"classes": [0, 1]}, "outside classes"),
        ("single worker", pd.DataFrame({"task": [1, 2], "worker": ["a", "a"], "label": [0, 1]}), {},
         "at least two teachers"),
        ("missing column", pd.DataFrame({"task": [1], "worker": ["a"]}), {}, "no column 'label'"),
        ("empty cell", pd.DataFrame({"task": [1, 2], "worker": ["a", None], "label": [0, 1]}), {},
         "row 1: column 'worker'"),
    ],
)
def test_bad_tables_raise_one_line(case, df, kw, needle):
    with pytest.raises(AggregatorError, match=needle) as err:
        BayesianDawidSkene(progress=False, steps=5).fit_table(df, **kw)
    assert "\n" not in str(err.value)


def test_predict_refuses_other_shapes_and_unfitted():
    with pytest.raises(AggregatorError, match="not fitted"):
        BayesianDawidSkene(progress=False).predict(_good())
    model = BayesianDawidSkene(progress=False, steps=5).fit(_good())
    with pytest.raises(AggregatorError, match="expected 3 teachers"):
        model.predict(_good(t=4))


# ------------------------------------------------------------------------------------ CLI


def _write_crowd(folder: Path, n=150, seed=0):
    truth = confusion_matrix([0.9, 0.8, 0.7, 0.65], k=2, seed=seed)
    probs, z = hard_votes(n, truth, pi=[0.5, 0.5], seed=seed + 1, abstain=0.2)
    df = probs_to_table(probs, [f"q{i}" for i in range(n)], ["w1", "w2", "w3", "w4"], [0, 1],
                        task="question", worker="worker", label="answer")
    answers, gold = folder / "answer.csv", folder / "truth.csv"
    df.to_csv(answers, index=False)
    pd.DataFrame({"question": [f"q{i}" for i in range(n)], "truth": z}).to_csv(gold, index=False)
    return answers, gold, df


def test_cli_writes_expected_columns(tmp_path, capsys):
    answers, gold, df = _write_crowd(tmp_path)
    out = tmp_path / "sub" / "post.csv"
    rc = cli_main([str(answers), "--out", str(out), "--truth", str(gold), "--quiet", "--seed", "3"])
    assert rc == 0
    post = pd.read_csv(out)
    assert list(post.columns) == ["question", "label", "confidence", "difficulty", "p_0", "p_1"]
    assert len(post) == df["question"].nunique()
    np.testing.assert_allclose(post[["p_0", "p_1"]].sum(1), 1.0, atol=1e-4)
    assert post["confidence"].between(0, 1).all() and post["difficulty"].between(0, 1).all()
    assert "accuracy=" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["post.csv"]  # no temp file left behind
    rc = cli_main([str(answers), "--out", str(out), "--quiet", "--no-difficulty"])
    assert rc == 0 and (pd.read_csv(out)["difficulty"] == 0).all()


@pytest.mark.parametrize(
    "content, needle",
    [
        ("question,worker\nq1,w1\n", "missing column 'answer'"),
        ("question,worker,answer\nq1,w1,0\nq1,w2,\n", "row 3, column 'answer': empty value"),
        ("question,worker,answer\nq1,w1,0\nq2,w1,1\n", "at least two teachers"),
        ("", "file is empty"),
        ("question,worker,answer\n", "no data rows"),
    ],
)
def test_cli_refuses_bad_file(tmp_path, capsys, content, needle):
    bad = tmp_path / "answers.csv"
    bad.write_text(content)
    out = tmp_path / "post.csv"
    rc = cli_main([str(bad), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert needle in err and str(bad) in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.csv"]


def test_cli_console_exit_code(tmp_path):
    bad = tmp_path / "answers.csv"
    bad.write_text("question,answer\n1,0\n")
    cmd = [sys.executable, "-m", "weaks2strong.aggregate.io.cli", str(bad), "--out", str(tmp_path / "o.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "missing column 'worker'" in proc.stderr
    assert not (tmp_path / "o.csv").exists()


# ------------------------------------------------------------------------------------ plots


def test_plots_write_files(tmp_path):
    from weaks2strong.evaluate.teacher_plots import plot_reliability, plot_teacher_confusions, teacher_arrays

    probs, z, _ = difficulty_data(800, seed=14, t=3)
    model = BayesianDawidSkene(**FAST).fit(probs)
    agg = model.predict(probs)
    names, conf, low, high = teacher_arrays(agg.teachers)
    assert conf.shape == (3, 2, 2) and (low <= conf).all() and (conf <= high).all()
    p1 = plot_teacher_confusions(conf, low, high, tmp_path / "conf.png", teacher_names=names)
    p2 = plot_reliability(agg.posterior, z, tmp_path / "rel.png")
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_warns_when_fit_looks_label_switched():
    truth = confusion_matrix([0.8, 0.75, 0.7], k=2, seed=15)
    probs, _ = hard_votes(300, truth, pi=[0.5, 0.5], seed=16)
    # a prior that insists teachers answer the *other* class drives the fit below chance
    with pytest.warns(UserWarning, match="label-switched"):
        BayesianDawidSkene(prior_diag=0.02, prior_strength=5000, difficulty=False, progress=False, steps=50).fit(probs)


def test_nuts_runs_on_a_tiny_problem():
    truth = confusion_matrix([0.9, 0.8, 0.7], k=2, seed=17)
    probs, z = hard_votes(60, truth, pi=[0.5, 0.5], seed=18)
    model = BayesianDawidSkene(method="nuts", difficulty=False, nuts_samples=15, nuts_warmup=15, progress=False)
    model.fit(probs)
    assert model.samples_["confusion"].shape == (15, 3, 2, 2)
    svi = BayesianDawidSkene(difficulty=False, progress=False).fit(probs)
    same = model.predict(probs).posterior.argmax(1) == svi.predict(probs).posterior.argmax(1)
    assert same.mean() >= 0.9  # posterior-mean globals and the MAP label (nearly) alike
