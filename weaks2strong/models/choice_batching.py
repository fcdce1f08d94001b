"""The old home of ``ChoicesDataModule`` (now ``weaks2strong/student/data/choices.py``)."""
def __getattr__(name: str):
    # A DataModule that moved to weaks2strong/student/data/ stays reachable here, lazily (models never
    # imports student at import time): conf/student/*.yaml's data._target_ names this path, and that
    # string is part of config_slice(cfg.student), which keys distill (cache keys).
    if name == "ChoicesDataModule":
        from weaks2strong.student.data.choices import ChoicesDataModule

        return ChoicesDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
