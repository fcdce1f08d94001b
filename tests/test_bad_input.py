# ruff: noqa: E501  (a table of cases reads best one case per line)
"""The bad-input suite: each bad input, given to the real ``w2s`` command, is refused with exit code 2
and one line ``w2s: error: ...`` naming the file, row or config key, and leaves no half-written
artifact behind. ``python tests/test_bad_input.py`` prints the table (input -> message).
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

SECRET = "sk-test-9f8e7d"


def _csv(tmp: Path, rows: list[dict], name: str = "data.csv") -> str:
    path = tmp / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def _reviews(n: int = 12, **change) -> list[dict]:
    rows = [{"text": f"a {'great' if i % 2 else 'awful'} film number {i}", "label": ["bad", "good"][i % 2]}
            for i in range(n)]
    for index, row in change.items():
        rows[int(index[1:])].update(row)
    return rows


def _jsonl_with_broken_line(tmp: Path) -> str:
    path = tmp / "data.jsonl"
    path.write_text('{"text": "fine", "label": "good"}\n{"text": "also fine", "label": "bad"}\n{"text": broken\n')
    return str(path)


JSONL_BODY = b'{"body": "x", "label": "good"}\n'


def _file(tmp: Path, name: str, content: bytes) -> str:
    (tmp / name).write_bytes(content)
    return str(tmp / name)


CSV = ["task=csv", "task.classes=[bad,good]", "task.sizes.weak_train=4", "task.sizes.w2s_train=4",
       "task.sizes.test=2", "task.sizes.val=2", "teachers=lexical"]  # 12 rows: weak_train and w2s_train as before val

# (name, overrides (a callable gets the tmp folder), what the one error line must contain)
CASES = [
    ("unknown config key", ["trainer.max_epoch=3"], "unknown config key 'trainer.max_epoch'"),
    ("unknown config option", ["task=sst3"], "no config 'task/sst3'; options: "),
    ("unparsable override", ["trainer.max_epochs=[1"], "cannot parse the command line"),
    ("read-only run dir", ["paths.runs_dir=/sys/w2s-runs"], "paths.runs_dir=/sys/w2s-runs is not writable"),
    ("read-only cache dir", ["paths.cache_dir=/proc/w2s-cache"], "paths.cache_dir=/proc/w2s-cache is not writable"),
    ("secret in the config", [f"+logger.wandb.api_key={SECRET}"], "config key 'logger.wandb.api_key' looks like a secret"),
    ("dataset mirror missing", ["paths.data_mirror=/nonexistent"], "dataset file not found: /nonexistent/sst2/train.tsv"),
    ("missing column", lambda t: [*CSV, f"task.path={_csv(t, [{'body': 'x', 'label': 'good'}] * 12)}"],
     "data.csv: no column 'text'"),
    ("missing label column", lambda t: [*CSV, f"task.path={_csv(t, [{'text': 'x'}] * 12)}"],
     "data.csv: no column 'label' (task.label_column; columns are text)"),
    ("missing split column", lambda t: [*CSV, f"task.path={_csv(t, _reviews())}", "task.split_column=part"],
     "data.csv: no column 'part' (task.split_column; columns are text, label)"),
    ("JSON-lines rows without the named field", lambda t: [*CSV, f"task.path={_file(t, 'data.jsonl', JSONL_BODY)}"],
     "data.jsonl: no column 'text' (task.text_column; columns are body, label)"),
    ("task file missing", lambda t: [*CSV, f"task.path={t}/nope.csv"], "nope.csv: no such file"),
    ("task file that is a folder", lambda t: [*CSV, f"task.path={t}"], "is not a file"),
    ("task file that is not text", lambda t: [*CSV, f"task.path={_file(t, 'data.csv', bytes(range(128, 256)) * 8)}"],
     "data.csv: cannot parse as csv: 'utf-8' codec can't decode byte"),
    ("empty task file", lambda t: [*CSV, f"task.path={_file(t, 'data.csv', b'')}"], "data.csv: empty file, no header row"),
    ("task=csv without a file", CSV, "task=csv needs task.path=<file> (CSV, TSV or JSON lines)"),
    ("unknown label", lambda t: [*CSV, f"task.path={_csv(t, _reviews(r3={'label': 'meh'}))}"],
     "data.csv: row 4 has label 'meh', not one of the classes"),
    ("empty text", lambda t: [*CSV, f"task.path={_csv(t, _reviews(r5={'text': ''}))}"],
     "data.csv: row 6 has an empty 'text'"),
    ("malformed JSON-lines row", lambda t: [*CSV, f"task.path={_jsonl_with_broken_line(t)}"],
     "data.jsonl:3: not valid JSON"),
    ("empty split", lambda t: [*CSV, f"task.path={_csv(t, [{**r, 'part': ('weak_train', 'val', 'w2s_train')[i // 4]} for i, r in enumerate(_reviews())])}",
                               "task.split_column=part"], "no rows with part=test"),
    ("split larger than the data", ["task.sizes.test=100000"], "task.sizes.test=100000 is more than the"),
    ("empty split size", ["task.sizes.test=0"], "config key 'task.sizes.test' must be >= 1, got 0"),
    ("negative split size", ["task.sizes.val=-1"], "config key 'task.sizes.val' must be >= 1, got -1"),
    ("a seed that is not an integer", ["seed=abc"], "config key 'seed' must be an integer, got 'abc'"),
    ("an empty batch", ["student.data.batch_size=0"], "config key 'student.data.batch_size' must be >= 1, got 0"),
    ("zero epochs", ["trainer.max_epochs=0"], "config key 'trainer.max_epochs' must be >= 1, got 0"),
    ("zero steps", ["+trainer.max_steps=0"], "config key 'trainer.max_steps' must be -1 (no limit) or >= 1, got 0"),
    ("zero training batches", ["+trainer.limit_train_batches=0"],
     "config key 'trainer.limit_train_batches' must be a count of batches >= 1 or a fraction in (0, 1], got 0"),
    ("zero DPO epochs", ["experiment=hh_harmless", "align.epochs=0"], "config key 'align.epochs' must be >= 1, got 0"),
    ("unknown student loss", ["student.model.loss=nope"], "config key 'student.model.loss' must be one of soft_ce, logconf, got 'nope'"),
    ("optimising a test metric", ["optimized_metric=pgr.test.vs_best_teacher"],
     "config key 'optimized_metric' must not read the test split, got 'pgr.test.vs_best_teacher': the test split decides nothing"),
    ("class names that are not strings", ["task.classes=[true,false]"], "task.classes[0] is True (bool), not a string"),
    ("a prompt naming a field the rows lack", ["task.prompt='{text_pair} {text}'"],
     "task.prompt uses {text_pair}, but the rows of"),
    ("verbalizers for the wrong number of classes", ["task.verbalizers=[a,b,c]"],
     "task.verbalizers has 3 entries for 2 classes"),
    ("no teachers", ["~teachers"], "teachers: no teacher configured"),
    ("a teacher class that does not exist", ["teachers=lexical", "+teachers.extra._target_=weaks2strong.teachers.nope.Foo"],
     "config teachers.extra: cannot build"),
    ("a teacher naming an unknown model", ["teachers=sentiment", "teachers.smollm2.model=no-such-lm"],
     "unknown model 'no-such-lm'"),
    ("a verbalizer that tokenizes to nothing", ["teachers=sentiment", "task.verbalizers=['',Positive]"],
     "verbalizer '' of task 'sst2' tokenizes to nothing"),
    ("a teacher that abstains everywhere",
     lambda t: [*CSV, f"task.path={_csv(t, [{'text': f'the table is in room {i}', 'label': ['bad', 'good'][i % 2]} for i in range(12)])}"],
     "teacher 'vader' abstained on every example of w2s_train"),
    ("one teacher for a multi-teacher aggregator", ["teachers=lexical", "~teachers.vader"],
     "the Bayesian aggregator needs at least two teachers, got 1 (tfidf_lr)"),
    ("unknown student model", ["teachers=lexical", "student.encoder=no-such-encoder"],
     "unknown model 'no-such-encoder'"),
    ("slurm with a device count that is not a number", ["-m", "hydra/launcher=slurm", "trainer=ddp"],
     "hydra.launcher: hydra/launcher=slurm starts one task per device: set trainer.devices to a number (got 'auto')"),
    ("alignment of a classification student", ["align=dpo", "teachers=lexical"],
     "align=dpo aligns a generation student (e.g. experiment=sciq_gen); task sst2 is a classification task"),
    ("DPO of an encoder student's verbalizers", ["align=verbalizer_dpo", "teachers=lexical"],
     "align=verbalizer_dpo DPOs a causal-LM student's class verbalizers, but student=minilm (weaks2strong.student.classify) has none to prefer"),
    ("bad weighting scheme", ["aggregator.weighting=sqrt"],
     "config key 'aggregator.weighting' must be one of none, confidence, confidence_squared, confidence_balanced, got 'sqrt'"),
]


# refused by the command-line pre-check (weaks2strong/runtime/checks.py), before Hydra starts the run:
# in seconds, where a run needs a minute or more of imports before it reads its task
PRE_CHECKED = {"missing column", "missing label column", "missing split column", "JSON-lines rows without the named field",
               "task file missing", "task file that is a folder", "task file that is not text", "empty task file",
               "task=csv without a file", "empty split size", "zero epochs", "zero steps", "zero training batches",
               "zero DPO epochs", "no teachers", "DPO of an encoder student's verbalizers"}


def run_w2s(tmp: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "weaks2strong.cli", "debug=fast", "logger=csv", f"paths.runs_dir={tmp}/runs",
            *overrides]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("w2s: error:")]


@pytest.mark.integration
@pytest.mark.parametrize("name, overrides, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_leaves_nothing_half_written(tmp_path, name, overrides, message):
    started = time.monotonic()
    done = run_w2s(tmp_path, overrides(tmp_path) if callable(overrides) else overrides)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-3000:]
    errors = error_lines(done)
    assert len(errors) == 1 and message in errors[0], done.stderr[-3000:]
    if name in PRE_CHECKED:  # Hydra never started the run: no run dir, no config copy, no stage
        assert not list(tmp_path.rglob(".hydra")) and took < 60, (took, done.stderr[-3000:])
    assert not list(tmp_path.rglob("*.tmp-*"))  # no scratch folder or file survives
    for stage in ("ceiling", "student"):  # no stage at or after the bad input was published
        assert not list((tmp_path / "runs" / ".cache" / stage).glob("*/manifest.json"))
    if SECRET in " ".join(overrides if isinstance(overrides, list) else []):
        leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET in p.read_text(errors="ignore")]
        assert not leaked


if __name__ == "__main__":  # the table for the docs: input -> message
    import tempfile

    print("| bad input | override(s) | w2s says |\n|---|---|---|")
    for name, overrides, _ in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            given = overrides(Path(tmp)) if callable(overrides) else overrides
            shown = [o for o in given if o not in CSV and not o.startswith("task.path=")] + (
                ["task=csv task.path=<file>"] if callable(overrides) else [])
            line = (error_lines(run_w2s(Path(tmp), given)) or ["(no error line)"])[0]
            print(f"| {name} | `{' '.join(shown)}` | {line.replace('|', '/').replace(tmp, '<tmp>')} |")


def test_a_truncated_checkpoint_is_refused_by_name_before_resuming(tmp_path):
    import json

    import torch

    from weaks2strong.pipeline.classification.distill import _resume_from
    from weaks2strong.runtime.errors import UserInputError

    left = tmp_path / "killed_run" / "last.ckpt"  # what an interrupted try left, cut off mid-write
    left.parent.mkdir()
    torch.save({"state_dict": {"w": torch.randn(256, 256)}, "epoch": 1}, left)
    left.write_bytes(left.read_bytes()[: left.stat().st_size // 2])
    pointer = tmp_path / ".key.resume.json"
    pointer.write_text(json.dumps({"last": str(left)}))
    ours = tmp_path / "this_run" / "last.ckpt"
    with pytest.raises(UserInputError, match=rf"checkpoint {left} is corrupt or truncated \(.*\); delete it and "):
        _resume_from(pointer, ours)
    assert not ours.exists()  # nothing copied, nothing to resume from by mistake


def test_secret_words_are_whole_words_of_the_key():
    """``hf_token`` holds a secret; ``max_new_tokens`` (a count) does not, and passes the pre-check."""
    from weaks2strong.runtime.checks import looks_secret

    assert [looks_secret(k) for k in ("api_key", "WANDB_API_KEY", "hf_token", "token", "db-password")] == [True] * 5
    assert [looks_secret(k) for k in ("max_new_tokens", "max_answer_tokens", "tokenizer")] == [False] * 3
