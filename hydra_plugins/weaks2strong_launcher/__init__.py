"""Hydra looks for plugins under the ``hydra_plugins`` namespace only; this one holds weaks2strong's
launchers (``weaks2strong/runtime/scheduler.py``) so that a config can name them."""
