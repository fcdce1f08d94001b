"""The preference path (a task of response pairs): ``teach`` and ``aggregate`` (the classification
path's stages on the judges' two-class votes) → ``align`` (DPO) → ``evaluate``, wired by ``run``."""
