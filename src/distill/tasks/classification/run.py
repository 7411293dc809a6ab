"""Run a classification recipe end to end: teacher, scratch baselines, distilled student, report.

Every phase is one stage of the shared :class:`~distill.experiment.Run` (its own folder,
resumed on its own); teachers come from the content-hash cache. Before any of them
trains, :func:`check_recipe` builds every model and the distiller once with one dummy
pass, so a bad tap, loss option or shape fails in seconds, not after the teacher.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distill.augment import build_augment
from distill.data import DataSplits, PairedViews, concat_datasets, load_dataset, student_views, with_validation
from distill.data.custom import require_labels
from distill.distiller import Distiller, Match
from distill.engine.cache import array_hash, cached_entry, data_identity, entry_folder, fit_or_load
from distill.engine.checkpoint import load_weights_file, save_weights_file, weights_for
from distill.engine.config import TRAIN_ONLY
from distill.engine.trainer import Evaluator
from distill.experiment.runner import Run
from distill.metrics.cost import cpu_latency_per_sample, parameter_count
from distill.models.source import build_network, carries_weights, check_forward, source_identity
from distill.models.weights import load_weights
from distill.multi_teacher import MultiTeacher
from distill.signals import CachedTeacher, build_teacher_cache
from distill.tasks.classification.defaults import complete_recipe
from distill.tasks.classification.metrics import evaluate_classifier
from distill.tasks.classification.objectives import DistillObjective, SupervisedObjective
from distill.tasks.classification.recipe import ClassificationRecipe, TeacherSpec


@dataclass
class RowResult:
    """One line of the results table; ``role`` is ``teacher``, ``combined`` (several teachers as one),
    ``scratch`` or ``distilled``; ``given``: where a teacher that was not trained by the run got its weights."""

    name: str
    role: str
    acc: float
    params: int
    latency_ms: float
    steps: int
    seconds: float
    samples_per_s: float
    history: list[dict] = field(default_factory=list, repr=False)
    given: str | None = None


def _evaluator(test_set):
    return lambda model, accelerator: evaluate_classifier(model, test_set, accelerator)


def _example(splits: DataSplits) -> torch.Tensor:
    """Two training inputs: the batch of the dummy passes before any training."""
    return torch.stack([splits.train[i][0] for i in range(2)])


def _row(name: str, role: str, model: nn.Module, splits: DataSplits, result, given: str | None = None) -> RowResult:
    example = splits.test[0][0].unsqueeze(0)
    return RowResult(
        name=name,
        role=role,
        acc=evaluate_classifier(model, splits.test)["acc"],
        params=parameter_count(model),
        latency_ms=1000 * cpu_latency_per_sample(model, example),
        steps=result.steps if result else 0,
        seconds=result.seconds if result else 0.0,
        samples_per_s=result.samples_per_second if result else 0.0,
        history=result.history if result else [],
        given=given,
    )


def load_recipe_data(recipe: ClassificationRecipe) -> DataSplits:
    """The recipe's dataset; with ``data.validation`` the test set is a held-out part of train."""
    splits = require_labels(load_dataset(recipe.data.name, **recipe.data.options), "classification")
    return with_validation(splits, recipe.data.validation) if recipe.data.validation else splits


def load_student_data(recipe: ClassificationRecipe) -> DataSplits:
    """The data the recipe's student sees: its channel subset in cross-sensor recipes."""
    splits = load_recipe_data(recipe)
    if recipe.data.student_channels:
        return student_views(splits, recipe.data.student_channels, recipe.data.student_align).student
    return splits


def build_student(recipe: ClassificationRecipe, splits: DataSplits) -> nn.Module:
    """The student, initialised from ``train.seed`` so every row starts from the same weights."""
    torch.manual_seed(recipe.train.seed)
    return build_network(recipe.student.model, splits.input_shape, splits.num_classes, recipe.student.options)


def _teacher_specs(recipe: ClassificationRecipe) -> list[TeacherSpec]:
    spec = recipe.teacher
    return [] if spec == "self" else [spec] if isinstance(spec, TeacherSpec) else list(spec.teachers)


def _build_teacher_net(spec: TeacherSpec, splits: DataSplits) -> nn.Module:
    """The teacher network, with the weights of ``spec.weights`` when given."""
    torch.manual_seed(spec.train.seed)
    teacher = build_network(spec.model, splits.input_shape, splits.num_classes, spec.options)
    return teacher if spec.weights is None else load_weights(teacher, spec.weights)


def _given(spec: TeacherSpec) -> str | None:
    """Where a teacher that the run does not train gets its weights: its file, or its own folder."""
    if spec.weights is not None:
        return str(spec.weights)
    return spec.model if carries_weights(spec.model) else None


def _combine(recipe: ClassificationRecipe, teachers: list[nn.Module]) -> nn.Module | str:
    if recipe.teacher == "self":
        return "self"
    if isinstance(recipe.teacher, TeacherSpec):
        return teachers[0]
    return MultiTeacher(teachers, recipe.teacher.weights, recipe.teacher.combine).eval()


def _one_teacher(recipe: ClassificationRecipe, spec: TeacherSpec, splits: DataSplits, run: Run, label: str):
    """One teacher given (its weights file or folder), from the content-hash cache, or trained and then cached."""
    teacher = _build_teacher_net(spec, splits)
    result, given = None, _given(spec)
    if given is None:
        cache_spec = {"data": data_identity(recipe.data.model_dump(mode="json"), splits),
                      "model": spec.model, "options": spec.options, **source_identity(spec.model),
                      "train": spec.train.model_dump(exclude=TRAIN_ONLY),
                      **({"augment": spec.augment} if spec.augment != "none" else {})}

        def fit() -> dict:
            nonlocal result
            objective = SupervisedObjective(teacher, build_augment(spec.augment))
            result = run.train(objective, splits.train, spec.train, label, _evaluator(splits.test))
            return {"acc": result.final.get("acc")}

        fit_or_load(teacher, cache_spec, fit)
    teacher.eval()
    name = f"teacher ({spec.model}{', given' if given else ''})"
    return teacher, _row(name, "teacher", teacher, splits, result, given)


def obtain_teacher(recipe: ClassificationRecipe, splits: DataSplits, run: Run):
    """The recipe's teacher and its result rows: one model, a MultiTeacher, or ``"self"`` (no rows)."""
    specs = _teacher_specs(recipe)
    labels = ["teacher"] if len(specs) == 1 else [f"teacher{i}" for i in range(len(specs))]
    built = [_one_teacher(recipe, spec, splits, run, label) for spec, label in zip(specs, labels)]
    teacher = _combine(recipe, [t for t, _ in built])
    rows = [row for _, row in built]
    if isinstance(teacher, MultiTeacher):
        rows.append(_row(f"teachers combined ({recipe.teacher.combine})", "combined", teacher, splits, None))
    return teacher, rows


def train_scratch(recipe: ClassificationRecipe, splits: DataSplits, run: Run, augment: str):
    """The student trained on labels alone with the same budget: the baseline."""
    student = build_student(recipe, splits)
    objective = SupervisedObjective(student, build_augment(augment, recipe.baselines.mixup_alpha))
    label = "scratch" if augment == "none" else f"scratch_{augment}"
    result = run.train(objective, splits.train, recipe.train, label, _evaluator(splits.test))
    name = f"student scratch ({recipe.student.model}{'' if augment == 'none' else ', ' + augment})"
    return student, _row(name, "scratch", student, splits, result)


def _taps(value: str | list[str]) -> str | tuple[str, ...]:
    return tuple(value) if isinstance(value, list) else value


def recipe_pairs(recipe: ClassificationRecipe) -> dict:
    """The recipe's ``distill.pairs`` as the ``{(student_tap, teacher_tap): Match}`` map a Distiller takes."""
    return {
        (_taps(p.student), _taps(p.teacher)): Match(p.loss, p.weight, p.warmup, p.project, options=p.options,
                                                    student_layout=p.student_layout, teacher_layout=p.teacher_layout)
        for p in recipe.distill.pairs
    }


def build_distill_objective(recipe: ClassificationRecipe, student: nn.Module, teacher: nn.Module | str,
                            splits: DataSplits, views: PairedViews | None = None) -> DistillObjective:
    """The recipe's Distiller (its projectors built from one dummy pass) inside its training objective."""
    example = _example(splits)
    example_teacher = views.paired_train.tensors["teacher_x"][:2] if views else None
    distiller = Distiller(student, teacher, recipe_pairs(recipe), example_input=example,
                          example_teacher_input=example_teacher)
    try:
        return DistillObjective(distiller, build_augment(recipe.distill.augment, recipe.distill.mixup_alpha),
                                task_weight=recipe.distill.task_weight)
    except Exception:
        distiller.export()  # leave no hooks on the models
        raise


def _views(recipe: ClassificationRecipe, splits: DataSplits) -> PairedViews | None:
    if not recipe.data.student_channels:
        return None
    return student_views(splits, recipe.data.student_channels, recipe.data.student_align)


def check_recipe(recipe: ClassificationRecipe, splits: DataSplits, views: PairedViews | None) -> None:
    """Build every model (given teachers with their weights) and the distiller, and run one dummy pass,
    before anything trains: bad model sources, weights, input shapes, taps, loss options and
    augment/loss combinations fail here in seconds."""
    specs = _teacher_specs(recipe)
    teachers = [_build_teacher_net(spec, splits) for spec in specs]
    teacher_example = views.paired_train.tensors["teacher_x"][:2] if views else _example(splits)
    for spec, teacher in zip(specs, teachers):
        check_forward(teacher, teacher_example, splits.num_classes, f"the teacher {spec.model!r}")
    student_splits = views.student if views else splits
    student = build_student(recipe, student_splits)
    check_forward(student, _example(student_splits), student_splits.num_classes, f"the student {recipe.student.model!r}")
    objective = build_distill_objective(recipe, student, _combine(recipe, teachers), student_splits, views)
    objective.distiller.export()


def cached_teacher(recipe: ClassificationRecipe, teacher: nn.Module, data, splits: DataSplits, run: Run) -> CachedTeacher:
    """``teacher``'s tapped outputs over the training inputs (``distill.teacher_signal: cache``): a cache entry
    keyed by the teacher (its recipe and weights), the data and the taps, so a run with the same teacher and
    data reuses it and any change rebuilds it. ``<run>/teacher_cache`` links to the entry the run read."""
    taps = recipe.distill.teacher_taps()
    identity = {"kind": "dense-teacher", "teacher": recipe.teacher.model_dump(mode="json"),
                "weights": array_hash(*teacher.state_dict().values()),
                "data": data_identity(recipe.data.model_dump(mode="json"), splits),
                "use_transfer": recipe.distill.use_transfer, "taps": taps}

    def build(staging: Path) -> dict:
        build_teacher_cache(teacher, data, staging, taps=taps)
        return {"inputs": len(data)}

    folder = entry_folder("teacher-signals", identity)
    cached_entry(folder, identity, build)
    link = run.folder / "teacher_cache"
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # a cache written into the run folder by an older version
    link.unlink(missing_ok=True)
    link.symlink_to(folder, target_is_directory=True)
    return CachedTeacher(folder)


def distill_data(recipe: ClassificationRecipe, splits: DataSplits, views: PairedViews | None = None):
    """The inputs the student is distilled on: the training set (paired views in cross-sensor recipes), and
    the dataset's unlabeled transfer set where the recipe uses it."""
    if views is not None:
        return views.paired_train
    if recipe.distill.use_transfer and splits.transfer is not None:
        return concat_datasets(splits.train, splits.transfer)
    return splits.train


def train_distilled(recipe: ClassificationRecipe, splits: DataSplits, teacher: nn.Module | str, run: Run,
                    views: PairedViews | None = None, evaluator: Evaluator | None = None):
    """The student distilled from ``teacher`` as the recipe describes (``views``: cross-sensor pairs),
    scored on ``splits.test`` (``evaluator``: instead, during training). The models keep no hooks, even
    when training stops with an error."""
    spec = recipe.distill
    data = distill_data(recipe, splits, views)
    if spec.teacher_signal == "cache":
        teacher = cached_teacher(recipe, teacher, data, splits, run)
    student = build_student(recipe, splits)
    objective = build_distill_objective(recipe, student, teacher, splits, views)
    try:
        result = run.train(objective, data, recipe.train, "distill", evaluator or _evaluator(splits.test))
    finally:
        objective.distiller.export()
    methods = "+".join(p.loss for p in spec.pairs) + ("" if spec.augment == "none" else f", {spec.augment}")
    return student, _row(f"student distilled ({recipe.student.model}, {methods})", "distilled", student, splits,
                         result)


def run_recipe(recipe: ClassificationRecipe, run: Run) -> tuple[list[RowResult], DataSplits, list[str]]:
    """Every phase of ``recipe`` in ``run``: the rows of the results table, the student's data and the notes
    on defaults filled in (the completed recipe is the run's ``recipe.yaml``). The distilled student's
    weights are written to ``student.safetensors``."""
    splits = load_recipe_data(recipe)
    recipe, notes = complete_recipe(recipe, splits)
    run.record_recipe(recipe)
    views = _views(recipe, splits)
    check_recipe(recipe, splits, views)
    teacher, rows = obtain_teacher(recipe, splits, run)
    if views is not None:
        splits = views.student
    for augment in recipe.baselines.augments:
        rows.append(train_scratch(recipe, splits, run, augment)[1])
    student, distilled_row = train_distilled(recipe, splits, teacher, run, views)
    rows.append(distilled_row)
    save_weights_file(run.folder / "student.safetensors", student.state_dict())
    return rows, splits, notes


def load_run_student(folder: Path, recipe: ClassificationRecipe, weights: Path | None = None):
    """A finished run's student (or the student in ``weights``: a file or a checkpoint folder) and its data."""
    splits = load_student_data(recipe)
    student = build_student(recipe, splits)
    source = Path(weights) if weights else Path(folder) / "student.safetensors"
    student.load_state_dict(weights_for(student, load_weights_file(source), source))
    return student.eval(), splits
