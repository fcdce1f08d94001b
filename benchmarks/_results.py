"""How a benchmark writes what it printed to ``docs/results/<name>.md``: results are written by the
script that measured them, never by hand (issue 24).

    record = Recording()                       # from here on, what is printed is also kept
    print(table)                               # the tables and the key=value line, as before
    record.write("refine", "Refinement beside naive and Bayesian weak supervision")

The file holds a title, one line naming the command that wrote it and when, and the printed text
verbatim in a ``text`` block. A script that fails before ``write``, or measured nothing and calls
``discard``, writes nothing.
"""
from __future__ import annotations

import io
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


class _Tee:
    """Writes to the real stdout and keeps a copy; anything else is the real stdout's."""

    def __init__(self, stream, copy: io.StringIO):
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Recording:
    """Keeps a copy of stdout from its creation until ``write``."""

    def __init__(self):
        self._text = io.StringIO()
        self._stdout = sys.stdout
        sys.stdout = _Tee(sys.stdout, self._text)

    def discard(self, why: str) -> None:
        """Stop keeping stdout and write nothing (say why: the file on record is left as it is)."""
        sys.stdout = self._stdout
        print(f"(nothing written: {why})")

    def write(self, name: str, title: str, out: str | os.PathLike | None = None, note: str = "",
              argv: list[str] | None = None) -> Path:
        """Stop keeping stdout; write the kept text to ``out`` (default ``docs/results/<name>.md``)."""
        sys.stdout = self._stdout
        path = Path(out) if out else RESULTS / f"{name}.md"
        args = sys.argv[1:] if argv is None else argv
        command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *map(shlex.quote, args)])
        lines = [f"# {title}", "",
                 f"Written by `{command}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU cores, 1-minute load "
                 f"average {os.getloadavg()[0]:.1f} when written); do not edit by hand." + (f" {note}" if note else ""),
                 "", "```text", self._text.getvalue().strip("\n"), "```", ""]
        from weaks2strong.runtime.artifacts import write_text

        write_text(path, "\n".join(lines))
        print(f"(written to {path})")
        return path
