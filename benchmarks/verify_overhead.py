"""What checking every reused artifact against its checksums adds to a rerun that reuses every stage.

    python benchmarks/verify_overhead.py                        # the default SST-2 run, 8 reruns each way
    python benchmarks/verify_overhead.py --overrides debug=fast logger=csv --repeats 5

Runs ``w2s`` once to fill a store under --runs (cold the first time; later calls reuse it), then reruns
it --repeats times with verification and as many times without, alternating, each a fresh process
timed from start to exit. Without verification, the child process replaces ``artifacts.check`` with
the key-only check of before checksums; with it, the child times every check and counts the bytes
it hashed. Every rerun must reuse every stage: no manifest in the store may change. Also times
``file_digest`` (xxh3-128, what the store uses) and hashlib's sha256 on a 1 GB file.

Headline: ``verify_overhead``, the seconds spent checking inside a rerun over the median rerun's
seconds without checking (measured inside the process, so it does not drown in the machine's
noise), and ``wall_overhead``, the fastest rerun with checking against the fastest without (the
wall clock of a machine shared with other jobs: noisy, the medians are printed beside it).
"""
from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ["logger=csv"]  # the default run, logging to CSV (W&B's offline process would only add seconds)


def child(mode: str, timing: str, w2s_args: list[str]) -> None:
    """One rerun in this process: ``w2s`` with verification ``on`` (timed) or ``off`` (key only)."""
    from weaks2strong.runtime import artifacts

    checked = {"seconds": 0.0, "bytes": 0, "files": 0, "artifacts": 0}
    full_check = artifacts.check

    def key_only(path: Path, key: str) -> tuple[str, str]:  # find() before checksums
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (FileNotFoundError, ValueError):
            return "absent", ""
        trusted = manifest.get("key") == key and manifest.get("schema") == artifacts.SCHEMA_VERSION
        return ("ok" if trusted else "absent"), ""

    def timed(path: Path, key: str) -> tuple[str, str]:
        started = time.perf_counter()
        out = full_check(path, key)
        checked["seconds"] += time.perf_counter() - started
        if out[0] == "ok":
            files = json.loads((path / "manifest.json").read_text())["files"]
            checked["artifacts"] += 1
            checked["files"] += len(files)
            checked["bytes"] += sum((path / name).stat().st_size for name in files)
        return out

    artifacts.check = timed if mode == "on" else key_only
    atexit.register(lambda: Path(timing).write_text(json.dumps(checked)))
    sys.argv = ["w2s", *w2s_args]
    from weaks2strong.cli import entry

    entry()


def manifests(cache: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in cache.glob("*/*/manifest.json")}


def rerun(mode: str, w2s_args: list[str], log: Path) -> tuple[float, dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as timing:
        started = time.perf_counter()
        with open(log, "w") as out:
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--timing", timing.name, "--", *w2s_args],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the {mode} rerun failed (exit {done.returncode}); see {log}")
        return wall, json.loads(Path(timing.name).read_text())


def hash_speed(folder: Path, size: int = 1 << 30) -> dict[str, float]:
    """GB/s of file_digest and of sha256 over one file of ``size`` random bytes (from the page cache)."""
    from weaks2strong.runtime.artifacts import file_digest

    path = folder / "verify_overhead.bin"
    try:
        with open(path, "wb") as fh:
            for _ in range(size >> 26):
                fh.write(os.urandom(1 << 26))
        speeds = {}
        for name, digest in (("xxh3_128", file_digest), ("sha256", _sha256)):
            best = min(_seconds(digest, path) for _ in range(3))
            speeds[name] = size / best / 1e9
        return speeds
    finally:
        path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _seconds(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overrides", nargs="*", default=DEFAULT, help=f"w2s overrides (default: {' '.join(DEFAULT)})")
    parser.add_argument("--repeats", type=int, default=8, help="reruns with verification, and as many without")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "verify_overhead",
                        help="runs_dir of the benchmark's runs (its .cache is the store, kept for the next call)")
    parser.add_argument("--out", type=Path, default=None, help="default: docs/results/verify_overhead.md")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--timing", help=argparse.SUPPRESS)
    parser.add_argument("w2s_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.timing, args.w2s_args)
        return 0

    runs = args.runs.resolve()
    base = [*args.overrides, f"paths.runs_dir={runs}"]
    cache = runs / ".cache"
    warm = runs / "warm"
    runs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()  # fill the store: cold the first time, then what changed since (code, config)
    rerun("on", [*base, f"hydra.run.dir={warm}"], runs / "warm.log")
    print(f"filling run: {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for i in range(args.repeats):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):  # the order alternates: drift cancels
            before = manifests(cache)
            wall, checked = rerun(mode, [*base, f"hydra.run.dir={runs / f'rerun-{mode}-{i}'}"],
                                  runs / f"rerun-{mode}-{i}.log")
            if manifests(cache) != before:
                raise SystemExit(f"the {mode} rerun {i} computed a stage; see {runs / f'rerun-{mode}-{i}.log'}")
            rows.append((mode, wall, checked))
            print(f"rerun {i} verification {mode}: {wall:.1f} s, checking {checked['seconds']:.3f} s", flush=True)
    speeds = hash_speed(runs)

    walls = {m: [w for mode, w, _ in rows if mode == m] for m in ("off", "on")}
    median, best = ({m: f(w) for m, w in walls.items()} for f in (statistics.median, min))
    checking = statistics.median(c["seconds"] for mode, _, c in rows if mode == "on")
    on = next(c for mode, _, c in rows if mode == "on")
    # the headline's wall-clock share compares the fastest rerun of each kind, the least disturbed by
    # other jobs (timeit's convention); the medians are printed beside it
    verify_overhead, wall_overhead = checking / median["off"], best["on"] / best["off"] - 1
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _results import Recording  # benchmarks/_results.py: what follows is printed and written to --out

    record = Recording()
    print(f"The run: w2s {' '.join(args.overrides)}"
          f"{' (the default SST-2 run, logging to CSV)' if args.overrides == DEFAULT else ''}. Each rerun is a fresh "
          f"process that reuses every stage (no manifest changed) and checks {on['artifacts']} artifacts: "
          f"{on['files']} files, {on['bytes'] / 1e6:.1f} MB (xxh3-128). Without verification, find() reads the "
          "manifest and compares its key, as before checksums.\n")
    print("| rerun | verification | wall s | checking s (inside the process) |\n|---|---|---|---|")
    for i, (mode, wall, checked) in enumerate(rows):
        print(f"| {i // 2} | {mode} | {wall:.1f} | {checked['seconds']:.3f} |" if mode == "on" else
              f"| {i // 2} | {mode} | {wall:.1f} | - |")
    print(f"\nWall clock without / with verification: fastest {best['off']:.1f} s / {best['on']:.1f} s "
          f"({wall_overhead:+.1%}), median {median['off']:.1f} s / {median['on']:.1f} s "
          f"({median['on'] / median['off'] - 1:+.1%}), on a machine shared with other jobs. Median checking time "
          f"inside a rerun {checking:.3f} s ({verify_overhead:.2%} of the median rerun without it), "
          f"{on['bytes'] / 1e9 / max(checking, 1e-9):.2f} GB/s.\n")
    print("| hash of a 1 GB file (page cache) | GB/s | s per GB |\n|---|---|---|")
    for name, gbs in speeds.items():
        print(f"| {name} | {gbs:.2f} | {1 / gbs:.2f} |")
    print(f"\nverify_overhead={verify_overhead:.4f} wall_overhead={wall_overhead:+.4f} "
          f"verify_gb_per_s={speeds['xxh3_128']:.2f} sha256_gb_per_s={speeds['sha256']:.2f} "
          f"rerun_s={median['off']:.1f}")
    record.write("verify_overhead", "What verifying cached artifacts adds to a rerun that reuses every stage",
                 out=args.out, argv=argv)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
