"""Every command in the README runs: `w2s` lines compose and pass the config checks, benchmark lines
name flags their script has, `w2s-aggregate` lines run for real on the shared data, `w2s-cache` lines
on a scratch store."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()  # a trailing comment starts after two spaces
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_its_commands_and_stays_a_guide():
    assert any(c.startswith("make demo") for c in COMMANDS) and any(c.startswith("make test") for c in COMMANDS)
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    known = (".venv/bin/w2s ", ".venv/bin/w2s-aggregate ", ".venv/bin/w2s-cache ", "python benchmarks/", "make ")
    assert all(c.startswith(known) or c == ".venv/bin/w2s" for c in COMMANDS), COMMANDS


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] == ".venv/bin/w2s"])
def test_w2s_commands_compose(command, monkeypatch, tmp_path):
    """Each w2s line passes the pre-check; a line that names a user's file (task.path=my.csv) gets one
    with the columns it names, since the pre-check reads the file's header."""
    from weaks2strong.runtime.checks import check_command_line

    args = shlex.split(command)[1:]
    given = dict(a.split("=", 1) for a in args if "=" in a)
    if "task.path" in given:
        monkeypatch.chdir(tmp_path)
        columns = [given.get("task.text_column", "text"), given.get("task.label_column", "label")]
        Path(given["task.path"]).write_text(",".join(columns) + "\nfine,good\n")
    assert check_command_line([a for a in args if a != "-m"]) is None


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python benchmarks/")])
def test_benchmark_commands_name_real_flags(command):
    args = shlex.split(command)
    script = ROOT / args[1]
    assert script.is_file(), script
    shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for flag in (a for a in args[2:] if a.startswith("--")):
        assert flag in shown.stdout, f"{flag} is not a flag of {args[1]}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith(".venv/bin/w2s-aggregate ")])
def test_w2s_aggregate_commands_run(command, tmp_path, monkeypatch):
    from weaks2strong.aggregate.io.cli import main

    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[1:]
    out = tmp_path / "posteriors.csv"
    args[args.index("--out") + 1] = str(out)  # the README's own --out, redirected to a scratch folder
    args += ["--quiet"]
    assert main(args) == 0
    assert out.is_file() and out.stat().st_size > 0


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith(".venv/bin/w2s-cache ")])
def test_w2s_cache_commands_run(command, tmp_path):
    from weaks2strong.runtime.artifacts import Store
    from weaks2strong.runtime.cache_cli import main

    with Store(tmp_path / "cache", run_dir=tmp_path / "run").create("teach", "k", {}, {}) as scratch:
        (scratch / "labels.json").write_text("{}")
    with Store(tmp_path / "cache").create("teach", "unused", {}, {}) as scratch:
        (scratch / "labels.json").write_text("{}")
    args = shlex.split(command)[1:] + ["--cache", str(tmp_path / "cache")]  # a scratch store, not runs/.cache
    assert main(args) == 0
    assert (tmp_path / "cache" / "teach" / "k").is_dir()  # referenced by a run dir: kept
