"""The built-in families, one folder each, imported on demand through ``distill.experiment.TASKS``.

A new family is a folder ``distill/tasks/<family>/`` with the inside every family shares
(``recipe``, ``run``, ``methods/`` with its registry in ``methods/__init__``, ``objectives``,
``metrics``, ``report`` and a ``task.py`` that calls ``register_task``) plus one entry in
``distill.experiment.tasks.BUILTIN_FAMILIES`` — or, for a family in the user's own
package, an entry point in the ``distill.tasks`` group.
"""
