"""``w2s-cache``: check and tidy an artifact store (``runs/.cache`` unless ``--cache`` names another).

    w2s-cache verify [--cache DIR]
    w2s-cache gc [--cache DIR] [--runs DIR ...] [--delete]

``verify`` checks every artifact against the checksums its manifest recorded, and every per-example
cache shard against the checksum in its name; it prints one line per bad one (the file, and why) and
a count, and exits 1 if any is bad. A bad artifact needs nothing more: the next run that needs it
computes it again and replaces it. Artifacts written before checksums are counted as unverified.

``gc`` lists the artifacts that no run dir references (a dry run); ``--delete`` removes them. A run
dir references what its ``artifacts_used.json`` lists (every artifact the run found or wrote); a run
from before that record counts by the paths in its ``artifacts.json``; and an artifact a kept one
was built from (a key among its manifest's ``inputs``) is kept too. The run dirs are those the store
lists under ``.runs/`` (every run that used it, wherever its folder is; a run dir since deleted no
longer counts) and those found under ``--runs`` (default: the cache's parent folder). Never removed:
an artifact a run dir references, one whose lock a process holds (it is being computed or reused),
and the per-example cache (``examples/``). A script that runs stages without a run dir records
nothing, so gc lists what only it used: give it a cache of its own (benchmarks/w2s_table.py does).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from weaks2strong.runtime.artifacts import USED, check, used_by
from weaks2strong.runtime.example_cache import shard_problem
from weaks2strong.runtime.resolvers import CONFIG_DIR

DEFAULT_CACHE = Path(CONFIG_DIR).parent / "runs" / ".cache"  # paths.cache_dir's default
EXAMPLES = "examples"  # the per-example cache's folder in the store (runtime/example_cache.py)


def artifact_folders(root: Path) -> Iterator[tuple[str, Path]]:
    """(``stage/key``, folder) for every published artifact folder of the store (not scratch, locks,
    the run registry or the per-example cache)."""
    for stage in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if stage.name == EXAMPLES:
            continue
        for folder in sorted(p for p in stage.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield f"{stage.name}/{folder.name}", folder


def verify(root: Path) -> int:
    counts = Counter()
    for name, folder in artifact_folders(root):
        state, why = check(folder, folder.name)
        counts[state] += 1
        if state == "bad":
            print(f"bad {name}: {why}")
        elif state == "absent":  # never reused, replaced by the next run that needs it
            print(f"ignored {name}: {why}")
    shards = Counter()
    for shard in sorted((root / EXAMPLES).glob("*/*.parquet")):
        problem = shard_problem(shard)
        shards["bad" if problem else "ok" if "-" in shard.stem else "unverified"] += 1
        if problem:
            print(f"bad {shard.relative_to(root)}: {problem}")
    print(f"verify {root}: {counts['ok']} artifacts ok, {counts['bad']} bad, {counts['unverified']} unverified "
          f"(written before checksums), {counts['absent']} ignored (no manifest for their key); example shards: "
          f"{shards['ok']} ok, {shards['bad']} bad, {shards['unverified']} unverified")
    return 1 if counts["bad"] + shards["bad"] else 0


def _run_dirs(root: Path, runs: list[Path]) -> tuple[set[Path], list[Path]]:
    """The run dirs that may reference the store, and its registry entries whose run dir is gone."""
    found, gone = set(), []
    for entry in sorted((root / ".runs").glob("*.json")):
        try:
            run_dir = Path(json.loads(entry.read_text())["run_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if run_dir.is_dir():
            found.add(run_dir)
        else:
            gone.append(entry)
    cache = root.resolve()
    for top in runs:
        for folder, subdirs, files in os.walk(top):
            if Path(folder).resolve() == cache:
                subdirs.clear()
                continue
            if USED in files or "artifacts.json" in files:
                found.add(Path(folder))
    return found, gone


def _paths_in(obj) -> Iterator[str]:
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            yield from _paths_in(item)
    elif isinstance(obj, str):
        yield obj


def referenced(root: Path, runs: list[Path]) -> tuple[set[str], int, list[Path]]:
    """The ``stage/key`` names some run dir references (with what they were built from), how many run
    dirs there are, and the registry entries of run dirs since deleted."""
    run_dirs, gone = _run_dirs(root, runs)
    cache, names = root.resolve(), set()
    for run_dir in run_dirs:
        names |= used_by(run_dir / USED, root)
        try:  # a run from before artifacts_used.json: the artifact paths its artifacts.json lists
            listed = json.loads((run_dir / "artifacts.json").read_text())
        except (OSError, ValueError):
            listed = None
        for text in _paths_in(listed):
            path = Path(text)
            if path.is_absolute() and path.parent.parent.resolve() == cache:
                names.add(f"{path.parent.name}/{path.name}")
    by_key: dict[str, list[str]] = {}
    for name, folder in artifact_folders(root):
        by_key.setdefault(folder.name, []).append(name)
    todo = list(names)
    while todo:  # what a kept artifact was built from: a key among its manifest's inputs
        try:
            inputs = json.loads((root / todo.pop() / "manifest.json").read_text()).get("inputs") or {}
        except (OSError, ValueError):
            continue
        for value in _paths_in(inputs):
            for name in by_key.get(value, []):
                if name not in names:
                    names.add(name)
                    todo.append(name)
    return names, len(run_dirs), gone


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def gc(root: Path, runs: list[Path], delete: bool, batch: int = 256) -> int:
    names, n_runs, gone = referenced(root, runs)
    candidates = [(name, folder) for name, folder in artifact_folders(root) if name not in names]
    removable, busy, total = 0, 0, 0
    for start in range(0, len(candidates), batch):
        held = []
        try:
            for name, folder in candidates[start:start + batch]:
                handle = open(folder.parent / f".{folder.name}.lock", "a")  # the lock Store.claim takes
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    busy += 1
                    print(f"in use {name}: kept")
                    continue
                held.append((name, folder, handle))
            # a run that found one of these just before its lock was taken has recorded it by now
            names = referenced(root, runs)[0]
            for name, folder, _ in held:
                if name in names:
                    continue
                size = _size(folder)
                removable, total = removable + 1, total + size
                if delete:  # out of sight in one rename, then removed
                    aside = folder.with_name(f".{folder.name}.gc-{uuid.uuid4().hex[:8]}")
                    os.rename(folder, aside)
                    shutil.rmtree(aside, ignore_errors=True)
                print(f"{'removed' if delete else 'would remove'} {name} ({size / 1e6:.1f} MB)")
        finally:
            for _, _, handle in held:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
    if delete:
        for entry in gone:
            entry.unlink(missing_ok=True)
    done = "removed" if delete else "to remove (a dry run: --delete removes them)"
    print(f"gc {root}: {len(names)} artifacts referenced by {n_runs} run dirs, {busy} in use; {removable} "
          f"unreferenced ({total / 1e6:.1f} MB) {done}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``w2s-cache`` console script."""
    parser = argparse.ArgumentParser(prog="w2s-cache", description="Check and tidy an artifact store.")
    commands = parser.add_subparsers(dest="command", required=True)
    check_cmd = commands.add_parser("verify", help="check every artifact and example shard against its checksums")
    collect = commands.add_parser("gc", help="list (or --delete) the artifacts no run dir references")
    for sub in (check_cmd, collect):
        sub.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"the store (default {DEFAULT_CACHE})")
    collect.add_argument("--runs", type=Path, nargs="*", default=None,
                         help="folders to search for run dirs (default: the cache's parent folder)")
    collect.add_argument("--delete", action="store_true", help="remove them (default: a dry run that lists them)")
    args = parser.parse_args(argv)
    if not args.cache.is_dir():
        print(f"w2s-cache: error: {args.cache} is not a folder (pass --cache DIR)")
        return 2
    if args.command == "verify":
        return verify(args.cache)
    return gc(args.cache, args.runs if args.runs is not None else [args.cache.resolve().parent], args.delete)


if __name__ == "__main__":
    raise SystemExit(main())
