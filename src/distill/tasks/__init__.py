"""The families, one folder each; importing this package registers every one in ``TASKS``.

A new family is a folder ``distill/tasks/<family>/`` (recipe, run, methods, metrics,
report and a ``task.py`` that calls ``register_task``) plus one line here.
"""

from distill.tasks.classification import task as _classification  # noqa: F401
from distill.tasks.steps import task as _steps  # noqa: F401
from distill.tasks.score import task as _score  # noqa: F401
from distill.tasks.language import task as _language  # noqa: F401
from distill.tasks.dataset import task as _dataset  # noqa: F401
