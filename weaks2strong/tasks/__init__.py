"""Tasks: a registry of datasets, their loaders, splits, and how an example is rendered."""
from weaks2strong.tasks.base import DEV_SPLITS, SPLITS, Task, TaskError
from weaks2strong.tasks.registry import TASKS, load_task

__all__ = ["DEV_SPLITS", "SPLITS", "TASKS", "Task", "TaskError", "load_task"]
