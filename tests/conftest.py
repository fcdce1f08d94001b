from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("W2S_DATA_MIRROR", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "sst2").is_dir():
        pytest.fail(f"the shared dataset mirror is missing at {MIRROR}; set W2S_DATA_MIRROR")
    return MIRROR


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The project's model cache (real zoo models are built there once and reused)."""
    return Path(os.environ.get("W2S_MODELS_DIR", ROOT / "data" / "models"))


@pytest.fixture
def small_sst2(mirror):
    from weaks2strong.tasks import load_task

    return load_task("sst2", sizes={"weak_train": 200, "val": 40, "w2s_train": 40, "test": 40}, mirror=str(mirror),
                     prompt="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"])
