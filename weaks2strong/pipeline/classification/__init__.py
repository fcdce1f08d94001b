"""The classification path (a task with classes; also the preference path's teach and aggregate):
``teach`` → ``refine`` → ``aggregate`` → ``distill`` → ``evaluate``, wired by ``run``."""
