"""Typed, versioned, atomically written stage artifacts, keyed by a hash of their inputs.

A stage writes into ``<cache>/<stage>/<key>/``: first into a temporary sibling folder, then one
``os.rename`` makes it visible, with ``manifest.json`` inside. Tables are parquet, small records
JSON, tensors safetensors; never pickle.

A folder is trusted only if its manifest names the same key and every file still has the checksum
the manifest recorded when it was written (``files``: xxh3-128 of each file; ``self``: of the
manifest itself), so neither a stage killed half-way nor a file changed on disk since (truncated,
a flipped bit) is reused: ``find`` logs one warning naming the file and answers None, the stage is
computed again, and ``create`` replaces the bad folder. A manifest written before checksums (no
``files``) is trusted unverified, as before: ``w2s-cache verify`` counts those apart.

A store given a run dir records there, in ``artifacts_used.json``, every artifact the run found or
wrote, and lists the run dir under ``<cache>/.runs/``: that is what ``w2s-cache gc`` keeps.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import mmap
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xxhash

SCHEMA_VERSION = 1
CHECKSUM = "xxh3_128"  # ~7 GB/s over memory on an idle core here, sha256 ~1.2 (benchmarks/verify_overhead.py)
USED = "artifacts_used.json"  # in a run dir: the artifacts the run found or wrote
log = logging.getLogger(__name__)


def stable_hash(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (dict keys sorted), stable across runs and machines."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def frame_hash(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """The xxh3-128 of a file's bytes: a small file in one read, a large one mapped into memory and
    hashed in place (no copy: ~3x faster than reading it in chunks here). A published artifact's files
    are never truncated in place (a bad folder is replaced by renames), so the mapping stays valid."""
    with open(path, "rb", buffering=0) as fh:
        if os.fstat(fh.fileno()).st_size <= 1 << 23:
            return xxhash.xxh3_128_hexdigest(fh.read())
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return xxhash.xxh3_128_hexdigest(mapped)


def _manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "self"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return f"{CHECKSUM}:{xxhash.xxh3_128_hexdigest(blob.encode())}"


def check(path: Path, key: str) -> tuple[str, str]:
    """The state of the artifact folder ``path`` for ``key``, and why: ``ok`` (every file matches its
    manifest), ``unverified`` (a manifest from before checksums: trusted), ``absent`` (no manifest, or
    one for another key or schema: a leftover, replaced quietly) or ``bad`` (a file, the manifest
    included, changed since it was written, is missing or cannot be read)."""
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return "absent", f"{path} has no manifest.json"
    except (OSError, ValueError) as err:  # JSON and UTF-8 errors are ValueErrors
        return "bad", f"{manifest_path} cannot be read ({type(err).__name__})"
    if not isinstance(manifest, dict):
        return "bad", f"{manifest_path} is not a manifest"
    if ("self" in manifest or "files" in manifest) and manifest.get("self") != _manifest_digest(manifest):
        return "bad", f"{manifest_path} does not match its own checksum"
    if manifest.get("key") != key or manifest.get("schema") != SCHEMA_VERSION:
        return "absent", f"{manifest_path} is for key {manifest.get('key')}, schema {manifest.get('schema')}"
    files = manifest.get("files")
    if files is None:
        return "unverified", f"{path} was written before checksums"
    for name, recorded in files.items():
        file = path / name
        try:
            actual = f"{CHECKSUM}:{file_digest(file)}"
        except FileNotFoundError:
            return "bad", f"{file} is missing"
        except OSError as err:
            return "bad", f"{file} cannot be read ({err.strerror})"
        if actual != recorded:
            return "bad", f"{file} does not match its checksum in manifest.json"
    return "ok", ""


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("weaks2strong", "torch", "transformers", "pytorch-lightning", "pyro-ppl", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class Artifact:
    """A finished stage output folder."""

    stage: str
    key: str
    path: Path

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    def table(self, name: str) -> pd.DataFrame:
        """A table of the artifact (read once per process while the file stays the same one: a
        published artifact never changes, but a bad one is replaced by a new folder of the same name)."""
        path = self.path / f"{name}.parquet"
        stat = path.stat()
        return _read_parquet(str(path), stat.st_ino, stat.st_mtime_ns)

    def record(self, name: str) -> dict:
        return json.loads((self.path / f"{name}.json").read_text())


class Store:
    """The artifact store: one folder per (stage, key). ``run_dir``: where to record what a run used."""

    def __init__(self, root: str | os.PathLike, run_dir: str | os.PathLike | None = None):
        self.root = Path(root)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._used: set[str] = set()

    def find(self, stage: str, key: str) -> Artifact | None:
        """The finished artifact, verified against its manifest's checksums; None if there is none
        or it is bad (one warning naming the file: the caller computes it again)."""
        path = self.root / stage / key
        state, why = check(path, key)
        if state == "bad":
            log.warning("%s %s: %s; not reused, computing it again", stage, key, why)
        if state not in ("ok", "unverified"):
            return None
        self._note(stage, key)
        return Artifact(stage, key, path)

    @contextmanager
    def claim(self, stage: str, key: str) -> Iterator[Artifact | None]:
        """Hold the lock of (stage, key) and yield the artifact if it is already done.

        Two processes about to compute the same artifact (parallel sweep jobs sharing teachers)
        take turns: the second waits, then finds the first one's result instead of recomputing it.
        """
        folder = self.root / stage
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".{key}.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s %s: another process is computing it; waiting", stage, key)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self.find(stage, key)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def create(self, stage: str, key: str, inputs: dict[str, str], config: Any) -> Iterator[Path]:
        """Yield a scratch folder; on clean exit it becomes the artifact (its manifest lists a checksum
        of every file in it), on error it is removed."""
        final = self.root / stage / key
        scratch = self.root / stage / f".{key}.tmp-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            yield scratch
            files = {p.relative_to(scratch).as_posix(): f"{CHECKSUM}:{file_digest(p)}"
                     for p in sorted(scratch.rglob("*")) if p.is_file() and p.name != "manifest.json"}
            manifest = json.loads(json.dumps({  # as it reads back, so that its own checksum does too
                "schema": SCHEMA_VERSION, "stage": stage, "key": key, "inputs": inputs,
                "config": config, "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "files": files}, default=_jsonable))
            write_json(scratch / "manifest.json", {**manifest, "self": _manifest_digest(manifest)})
            if check(final, key)[0] not in ("ok", "unverified"):
                # absent, an untrusted leftover or a bad artifact: moved aside in one rename (a reader
                # holding its files keeps them), replaced, then removed
                aside = final.with_name(f".{key}.old-{uuid.uuid4().hex[:8]}")
                try:
                    os.rename(final, aside)
                except FileNotFoundError:
                    pass
                try:
                    os.rename(scratch, final)
                except OSError:
                    if not final.is_dir():
                        raise
                    # else a concurrent process published it first: keep theirs
                shutil.rmtree(aside, ignore_errors=True)
            # else a concurrent process published it first; readers may hold it, keep theirs
            self._note(stage, key)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _note(self, stage: str, key: str) -> None:
        """Record (stage, key) as used by the run dir, and the run dir in the store (for gc)."""
        if self.run_dir is None or f"{stage}/{key}" in self._used:
            return
        record = self.run_dir / USED
        if not self._used:  # the first of this run: list the run dir in the store, keep what a rerun recorded
            run_dir = str(self.run_dir.resolve())
            write_json(self.root / ".runs" / f"{stable_hash(run_dir)}.json", {"run_dir": run_dir})
            self._used.update(used_by(record, self.root))
        self._used.add(f"{stage}/{key}")
        write_json(record, {"cache": str(self.root.resolve()), "artifacts": sorted(self._used)})


def used_by(record: Path, root: Path) -> set[str]:
    """The ``stage/key`` names a run dir's ``artifacts_used.json`` lists in the store at ``root``."""
    try:
        used = json.loads(record.read_text())
    except (OSError, ValueError):
        return set()
    return set(used.get("artifacts", [])) if used.get("cache") == str(Path(root).resolve()) else set()


@functools.lru_cache(maxsize=64)
def _read_parquet(path: str, inode: int, mtime_ns: int) -> pd.DataFrame:
    return pd.read_parquet(path)


def write_json(path: Path, obj: Any) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n"))


def write_weights(path: Path, state: dict) -> None:
    """A state dict as safetensors. safetensors refuses tensors that share memory (tied weights:
    Gemma's LM head is its token table), so each later name of a shared tensor is written as its own
    copy; ``load_state_dict`` then fills both names (the tie itself lives in the model)."""
    from safetensors.torch import save_file

    seen, tensors = set(), {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.clone() if storage in seen else tensor
        seen.add(storage)
    _atomic(path, lambda tmp: save_file(tensors, str(tmp)))


def write_table(path: Path, df: pd.DataFrame) -> None:
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


def write_csv(path: Path, df: pd.DataFrame, **to_csv) -> None:
    """A table as CSV, for people and other tools (the stages' own tables are parquet)."""
    _atomic(path, lambda tmp: df.to_csv(tmp, index=False, **to_csv))


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
