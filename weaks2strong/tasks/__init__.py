"""Tasks: a registry of datasets, their loaders, splits, and how an example is rendered."""
from weaks2strong.tasks.base import SPLITS, Task, TaskError
from weaks2strong.tasks.registry import TASKS, load_task

__all__ = ["SPLITS", "TASKS", "Task", "TaskError", "load_task"]
