"""The recipe base every family shares: strict sections, ``--set`` overrides, read / validate / dump.

A recipe is a YAML mapping whose ``task`` field (default ``classification``) names
the family; :func:`load_recipe` looks that family up in :data:`distill.experiment.TASKS`
and validates the mapping against that family's model only, so an error names the
fields of one branch, never of every family at once.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from distill.engine.config import StrictModel, TrainConfig
from distill.errors import ConfigError, DistillError

DEFAULT_TASK = "classification"


def check_registered(registry, name: str, options: dict, **context) -> None:
    """Inside a pydantic validator: :meth:`Registry.check <distill.registry.Registry.check>` ``name`` with
    ``options`` (``context``: what the method's own check needs, e.g. ``ipc``), its error re-raised as a
    ValueError so the recipe's message names the section — every family's recipe validates its method,
    loss or guidance this way, when it loads."""
    try:
        registry.check(name, options, **context)
    except DistillError as err:
        raise ValueError(str(err)) from None


class RegisteredSpec(StrictModel):
    """A recipe section naming a registered method (loss, guidance, step method) and its options, checked
    when the recipe loads. Subclasses say which registry by :meth:`registry` (imported lazily, so loading
    the recipe module imports no method)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def registry(cls):
        """The registry the ``name`` is looked up in."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _registered(self) -> RegisteredSpec:
        check_registered(type(self).registry(), self.name, self.options)
        return self

    def build(self):
        """The registered method built with its options."""
        return type(self).registry().build(self.name, **self.options)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(recipe)"
        value = item.get("input")
        shown = f" (got {value!r})" if item["type"] != "missing" and not isinstance(value, dict) else ""
        lines.append(f"  - {field}: {item['msg']}{shown}")
    return f"invalid recipe {source}:\n" + "\n".join(lines)


def set_path(tree: dict, dotted: str, value: Any) -> None:
    """Set ``tree[a][b][...] = value`` for ``"a.b..."``; numeric keys index lists (``pairs.0.loss``)."""
    keys = dotted.split(".")
    node: Any = tree
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {dotted}: {where} must index one of the {len(node)} list entries.")
            index = int(key)
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        else:
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[:depth])} is a value, not a section.")


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``["train.lr=0.01", ...]`` → ``[("train.lr", 0.01), ...]`` with YAML-typed values."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (e.g. train.lr=0.01), got {item!r}.")
        parsed.append((key.strip(), yaml.safe_load(raw)))
    return parsed


def read_recipe_tree(source: Path | str | dict) -> tuple[dict, str]:
    """The recipe's YAML mapping (a deep copy when a dict is given) and a label for errors."""
    if isinstance(source, dict):
        tree, label = copy.deepcopy(source), "(dict)"
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"recipe file {path} does not exist.")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"recipe {path} is not valid YAML: {err}") from None
        label = str(path)
    if not isinstance(tree, dict):
        raise ConfigError(f"recipe {label} must be a YAML mapping of sections (data, teacher, student, ...).")
    return tree, label


def validate_recipe(kind: type[BaseModel], tree: dict, label: str, overrides: list[str] | None = None):
    """``tree`` validated as ``kind`` with ``--set`` overrides; every problem listed in one ConfigError.

    Overrides are applied on top of the recipe *with its defaults filled in*, so
    ``--set teacher.train.lr=0.01`` changes one field of a default section instead of
    replacing the whole section by ``{lr: 0.01}``.
    """
    parsed = parse_overrides(overrides or [])
    if parsed:
        try:
            tree = kind.model_validate(tree).model_dump(mode="json", exclude_unset=False)
        except ValidationError:
            pass  # the overrides may be what makes it valid; the final validation reports what is left
        for key, value in parsed:
            set_path(tree, key, value)
    try:
        return kind.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, label)) from None


def recipe_task(tree: dict, label: str) -> str:
    """The family a recipe mapping names in its ``task`` field (``classification`` when absent)."""
    task = tree.get("task", DEFAULT_TASK)
    if not isinstance(task, str):
        raise ConfigError(f"invalid recipe {label}: task must be a family name such as 'classification', got {task!r}.")
    return task


def load_recipe(source: Path | str | dict, overrides: list[str] | None = None) -> BaseModel:
    """Read any recipe, find its family by ``task`` in ``TASKS`` and validate it as that family's recipe."""
    from distill.experiment.tasks import get_task

    tree, label = read_recipe_tree(source)
    for key, value in parse_overrides(overrides or []):
        if key == "task":
            tree["task"] = value
    try:
        task = get_task(recipe_task(tree, label))
    except ConfigError:
        raise
    except DistillError as err:
        raise ConfigError(f"invalid recipe {label}: task: {err}") from None
    return validate_recipe(task.recipe, tree, label, overrides)


def train_configs(section: Any) -> Iterator[TrainConfig]:
    """Every :class:`TrainConfig` inside a recipe (teacher, student, classifier, ...), depth first."""
    if isinstance(section, TrainConfig):
        yield section
    elif isinstance(section, BaseModel):
        for name in type(section).model_fields:
            yield from train_configs(getattr(section, name))
    elif isinstance(section, (list, tuple)):
        for item in section:
            yield from train_configs(item)


def dump_recipe(recipe: BaseModel) -> str:
    """The recipe as YAML, as it was actually run."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
