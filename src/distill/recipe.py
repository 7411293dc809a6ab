"""YAML recipes, validated by pydantic: every field a user can get wrong is named when wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distill.engine.config import TrainConfig
from distill.errors import ConfigError


class StrictModel(BaseModel):
    """A recipe section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DataSpec(StrictModel):
    """Which dataset and its loader options (e.g. ``transfer_size`` for MNIST-1D)."""

    name: str = "mnist1d"
    options: dict[str, Any] = Field(default_factory=dict)
    validation: int = Field(0, ge=0, description="if > 0, evaluate on this many held-out training samples (tuning)")
    student_channels: list[int] | None = Field(None, description="cross-sensor: the student sees only these channels")
    student_align: bool = Field(False, description="Euclidean-align the student's channel subset on its own")


class ModelSpec(StrictModel):
    """A zoo model by name with its options."""

    model: str
    options: dict[str, Any] = Field(default_factory=dict)


class TeacherSpec(ModelSpec):
    """The teacher: trained by the run (cached by content hash) unless ``weights`` is given."""

    weights: Path | None = None
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=4000))
    augment: Literal["none", "mixup", "jitter"] = "none"


class MultiTeacherSpec(StrictModel):
    """Several teachers combined into one (``distill.multi_teacher.MultiTeacher``)."""

    teachers: list[TeacherSpec] = Field(min_length=2)
    weights: list[float] | None = None
    combine: Literal["logits", "probs"] = "logits"


class PairSpec(StrictModel):
    """One matched pair: student tap, teacher tap, loss name, weight and loss options."""

    student: str | list[str] = Field("output", description="a tap, or a list of taps for multi-level losses")
    teacher: str | list[str] = "output"
    loss: str
    weight: float = 1.0
    warmup: int = Field(0, ge=0, description="training passes over which the weight ramps up from 0")
    project: bool = Field(False, description="always project the student tensor onto the teacher's shape (exits, OFA)")
    options: dict[str, Any] = Field(default_factory=dict)
    student_layout: Literal["auto", "channels_first", "tokens"] = "auto"
    teacher_layout: Literal["auto", "channels_first", "tokens"] = "auto"


class DistillSpec(StrictModel):
    """How the student learns from the teacher."""

    pairs: list[PairSpec] = Field(min_length=1)
    task_weight: float = Field(0.0, ge=0, description="weight of the plain cross-entropy on labels")
    augment: Literal["none", "mixup", "jitter"] = "none"
    mixup_alpha: float = Field(1.0, gt=0)
    use_transfer: bool = Field(True, description="also train on the dataset's unlabeled transfer set")


class BaselineSpec(StrictModel):
    """From-scratch students trained in the same run with the same budget, one per augmentation."""

    augments: list[Literal["none", "mixup", "jitter"]] = Field(default_factory=lambda: ["none", "mixup"])
    mixup_alpha: float = Field(1.0, gt=0)


class Recipe(StrictModel):
    """A whole experiment: data, teacher, student, how to distil, budget, baselines."""

    name: str = "experiment"
    seed: int = 0
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: TeacherSpec | MultiTeacherSpec | Literal["self"]
    student: ModelSpec
    distill: DistillSpec
    train: TrainConfig
    baselines: BaselineSpec = Field(default_factory=BaselineSpec)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(recipe)"
        value = item.get("input")
        shown = f" (got {value!r})" if item["type"] != "missing" and not isinstance(value, dict) else ""
        lines.append(f"  - {field}: {item['msg']}{shown}")
    return f"invalid recipe {source}:\n" + "\n".join(lines)


def _set_path(tree: dict, dotted: str, value: Any) -> None:
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
                node = node.setdefault(key, {})
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


def read_recipe_tree(source: Path | str | dict, overrides: list[str] | None = None) -> tuple[dict, str]:
    """The recipe's YAML mapping with ``--set key=value`` overrides applied, and a label for errors."""
    if isinstance(source, dict):
        tree, label = dict(source), "(dict)"
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
    for key, value in parse_overrides(overrides or []):
        _set_path(tree, key, value)
    return tree, label


def validate_recipe(kind: type[BaseModel], tree: dict, label: str):
    """``tree`` validated as ``kind``; every problem listed in one ConfigError."""
    try:
        return kind.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, label)) from None


def load_recipe(source: Path | str | dict, overrides: list[str] | None = None) -> Recipe:
    """Read and validate a model-compression recipe file (or dict), applying ``--set`` overrides."""
    return validate_recipe(Recipe, *read_recipe_tree(source, overrides))


def dump_recipe(recipe: BaseModel) -> str:
    """The recipe as YAML, as it was actually run."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def train_configs(recipe: Recipe) -> list[TrainConfig]:
    """Every training budget in the recipe: the student's and each trained teacher's."""
    teacher = recipe.teacher
    teachers = [] if teacher == "self" else teacher.teachers if isinstance(teacher, MultiTeacherSpec) else [teacher]
    return [recipe.train, *(t.train for t in teachers)]
