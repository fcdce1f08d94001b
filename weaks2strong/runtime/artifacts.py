"""Typed, versioned, atomically written stage artifacts, keyed by a hash of their inputs.

A stage writes into ``<cache>/<stage>/<key>/``: first into a temporary sibling folder, then one
``os.rename`` makes it visible, with ``manifest.json`` inside. A folder is trusted only if its
manifest names the same key, so a stage killed half-way leaves nothing a rerun would reuse.
Tables are parquet, small records JSON, tensors safetensors; never pickle.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
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

SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


def stable_hash(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (dict keys sorted), stable across runs and machines."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def frame_hash(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()[:16]


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
        """A table of the artifact (read once per process: a published artifact never changes)."""
        return _read_parquet(str(self.path / f"{name}.parquet"))

    def record(self, name: str) -> dict:
        return json.loads((self.path / f"{name}.json").read_text())


class Store:
    """The artifact store: one folder per (stage, key)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def find(self, stage: str, key: str) -> Artifact | None:
        path = self.root / stage / key
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if manifest.get("key") != key or manifest.get("schema") != SCHEMA_VERSION:
            return None
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
        """Yield a scratch folder; on clean exit it becomes the artifact, on error it is removed."""
        final = self.root / stage / key
        scratch = self.root / stage / f".{key}.tmp-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            yield scratch
            write_json(scratch / "manifest.json", {
                "schema": SCHEMA_VERSION, "stage": stage, "key": key, "inputs": inputs,
                "config": config, "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
            if self.find(stage, key) is not None:
                return  # a concurrent process published it first; readers may hold it, keep theirs
            if final.exists():  # an untrusted leftover (no manifest, or an old schema): replace it
                shutil.rmtree(final, ignore_errors=True)
            os.rename(scratch, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@functools.lru_cache(maxsize=64)
def _read_parquet(path: str) -> pd.DataFrame:
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
