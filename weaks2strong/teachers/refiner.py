"""Kept importable because a cache key names it: conf/refine/in_context.yaml's ``model._target_``
(weaks2strong.teachers.refiner.InContextRefiner) is part of ``config_slice(refine_cfg)``, which keys the
refine stage; the refiner itself lives in ``weaks2strong/refine/in_context.py``."""
from weaks2strong.refine.in_context import InContextRefiner  # noqa: F401  (cache keys)
