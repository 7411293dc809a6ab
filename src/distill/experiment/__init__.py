"""Experiments shared by every family: the recipe base, the run folder, the results table, ``TASKS``."""

from distill.experiment.recipe import dump_recipe, load_recipe, read_recipe_tree, validate_recipe
from distill.experiment.runner import Run, load_run_recipe
from distill.experiment.table import Column, Table, number
from distill.experiment.tasks import TASKS, Outcome, Task, TaskOption, all_tasks, get_task, register_task

__all__ = ["TASKS", "Column", "Outcome", "Run", "Table", "Task", "TaskOption", "all_tasks", "dump_recipe", "get_task",
           "load_recipe", "load_run_recipe", "number", "read_recipe_tree", "register_task", "validate_recipe"]
