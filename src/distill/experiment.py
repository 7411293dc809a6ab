"""Run a classification recipe end to end: teacher, scratch baselines, distilled student, report.

Every phase is an ordinary call to :func:`distill.engine.train` with its own run
folder, so each resumes on its own; the teacher is cached by content hash.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from distill.augment import build_augment
from distill.data import DataSplits, PairedViews, concat_datasets, load_dataset, student_views, with_validation
from distill.distiller import Distiller, Match
from distill.engine.checkpoint import latest_checkpoint, load_weights_file
from distill.engine.objectives import DistillObjective, SupervisedObjective
from distill.engine.trainer import train
from distill.losses import masked_cross_entropy
from distill.models import build_model
from distill.multi_teacher import MultiTeacher
from distill.recipe import Recipe, TeacherSpec, dump_recipe
from distill.tasks.classification import count_parameters, cpu_latency_per_sample, evaluate_classifier
from distill.teachers import load_cached_teacher, store_teacher


@dataclass
class RowResult:
    """One line of the results table."""

    name: str
    acc: float
    params: int
    latency_ms: float
    steps: int
    seconds: float
    samples_per_s: float
    history: list[dict] = field(default_factory=list, repr=False)


def _evaluator(test_set):
    return lambda model, accelerator: evaluate_classifier(model, test_set, accelerator)


def _phase(objective: nn.Module, data, recipe_train, folder: Path, test_set, resume: bool, label: str):
    resume_here = resume and latest_checkpoint(folder / "checkpoints") is not None
    return train(objective, data, recipe_train, folder, _evaluator(test_set), resume=resume_here, description=label)


def _row(name: str, model: nn.Module, splits: DataSplits, result) -> RowResult:
    example = splits.test[0][0].unsqueeze(0)
    return RowResult(
        name=name,
        acc=evaluate_classifier(model, splits.test)["acc"],
        params=count_parameters(model),
        latency_ms=1000 * cpu_latency_per_sample(model, example),
        steps=result.steps if result else 0,
        seconds=result.seconds if result else 0.0,
        samples_per_s=result.samples_per_second if result else 0.0,
        history=result.history if result else [],
    )


def load_recipe_data(recipe: Recipe) -> DataSplits:
    """The recipe's dataset; with ``data.validation`` the test set is a held-out part of train."""
    splits = load_dataset(recipe.data.name, **recipe.data.options)
    return with_validation(splits, recipe.data.validation) if recipe.data.validation else splits


def load_student_data(recipe: Recipe) -> DataSplits:
    """The data the recipe's student sees: its channel subset in cross-sensor recipes."""
    splits = load_recipe_data(recipe)
    if recipe.data.student_channels:
        return student_views(splits, recipe.data.student_channels, recipe.data.student_align).student
    return splits


def build_student(recipe: Recipe, splits: DataSplits) -> nn.Module:
    """The student, initialised from ``train.seed`` so every row starts from the same weights."""
    torch.manual_seed(recipe.train.seed)
    return build_model(recipe.student.model, splits.input_shape, splits.num_classes, **recipe.student.options)


def _one_teacher(recipe: Recipe, spec: TeacherSpec, splits: DataSplits, folder: Path, resume: bool):
    """One teacher from ``spec.weights``, the content-hash cache, or trained and then cached."""
    torch.manual_seed(spec.train.seed)
    teacher = build_model(spec.model, splits.input_shape, splits.num_classes, **spec.options)
    result = None
    if spec.weights is not None:
        teacher.load_state_dict(load_weights_file(spec.weights))
    else:
        cache_spec = {"data": recipe.data.model_dump(), "model": spec.model, "options": spec.options,
                      "train": spec.train.model_dump(exclude={"progress", "tensorboard", "log_every"}),
                      **({"augment": spec.augment} if spec.augment != "none" else {})}
        if load_cached_teacher(teacher, cache_spec) is None:
            objective = SupervisedObjective(teacher, build_augment(spec.augment))
            result = _phase(objective, splits.train, spec.train, folder, splits.test, resume, folder.name)
            store_teacher(teacher, cache_spec, {"acc": result.final.get("acc")})
    teacher.eval()
    return teacher, _row(f"teacher ({spec.model})", teacher, splits, result)


def obtain_teacher(recipe: Recipe, splits: DataSplits, run_dir: Path, resume: bool = False):
    """The recipe's teacher and its result rows: one model, a MultiTeacher, or ``"self"`` (no rows)."""
    spec = recipe.teacher
    if spec == "self":
        return "self", []
    if isinstance(spec, TeacherSpec):
        teacher, row = _one_teacher(recipe, spec, splits, run_dir / "teacher", resume)
        return teacher, [row]
    built = [_one_teacher(recipe, one, splits, run_dir / f"teacher{i}", resume) for i, one in enumerate(spec.teachers)]
    teacher = MultiTeacher([t for t, _ in built], spec.weights, spec.combine).eval()
    combined = _row(f"teachers combined ({spec.combine})", teacher, splits, None)
    return teacher, [row for _, row in built] + [combined]


def train_scratch(recipe: Recipe, splits: DataSplits, run_dir: Path, augment: str, resume: bool = False):
    """The student trained on labels alone with the same budget: the baseline."""
    student = build_student(recipe, splits)
    objective = SupervisedObjective(student, build_augment(augment, recipe.baselines.mixup_alpha))
    label = "scratch" if augment == "none" else f"scratch_{augment}"
    result = _phase(objective, splits.train, recipe.train, run_dir / label, splits.test, resume, label)
    name = f"student scratch ({recipe.student.model}{'' if augment == 'none' else ', ' + augment})"
    return student, _row(name, student, splits, result)


def _taps(value: str | list[str]) -> str | tuple[str, ...]:
    return tuple(value) if isinstance(value, list) else value


def recipe_pairs(recipe: Recipe) -> dict:
    """The recipe's ``distill.pairs`` as the ``{(student_tap, teacher_tap): Match}`` map a Distiller takes."""
    return {
        (_taps(p.student), _taps(p.teacher)): Match(p.loss, p.weight, p.warmup, p.project, options=p.options,
                                                    student_layout=p.student_layout, teacher_layout=p.teacher_layout)
        for p in recipe.distill.pairs
    }


def build_distiller(recipe: Recipe, student: nn.Module, teacher: nn.Module, splits: DataSplits,
                    views: PairedViews | None = None) -> Distiller:
    """A Distiller wired as the recipe's ``distill.pairs`` say."""
    pairs = recipe_pairs(recipe)
    example = torch.stack([splits.train[i][0] for i in range(2)])
    example_teacher = views.paired_train.x[:2, views.student_width:] if views else None
    task = masked_cross_entropy if recipe.distill.task_weight else None
    return Distiller(student, teacher, pairs, task_loss=task, task_weight=recipe.distill.task_weight,
                     example_input=example, example_teacher_input=example_teacher)


def train_distilled(recipe: Recipe, splits: DataSplits, teacher: nn.Module, run_dir: Path, resume: bool = False,
                    views: PairedViews | None = None):
    """The student distilled from ``teacher`` as the recipe describes (``views``: cross-sensor pairs)."""
    student = build_student(recipe, splits)
    distiller = build_distiller(recipe, student, teacher, splits, views)
    spec = recipe.distill
    objective = DistillObjective(distiller, build_augment(spec.augment, spec.mixup_alpha),
                                 views.student_width if views else None)
    data = views.paired_train if views else splits.train
    if spec.use_transfer and splits.transfer is not None and views is None:
        data = concat_datasets(splits.train, splits.transfer)
    result = _phase(objective, data, recipe.train, run_dir / "distill", splits.test, resume, "distill")
    methods = "+".join(p.loss for p in spec.pairs) + ("" if spec.augment == "none" else f", {spec.augment}")
    return distiller.export(), _row(f"student distilled ({recipe.student.model}, {methods})", student, splits, result)


def run_recipe(recipe: Recipe, run_dir: Path, resume: bool = False) -> dict:
    """Run every phase of ``recipe`` in ``run_dir`` and write ``results.json`` and the student weights."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    splits = load_recipe_data(recipe)
    teacher, rows = obtain_teacher(recipe, splits, run_dir, resume)
    views = None
    if recipe.data.student_channels:
        views = student_views(splits, recipe.data.student_channels, recipe.data.student_align)
        splits = views.student
    for augment in recipe.baselines.augments:
        rows.append(train_scratch(recipe, splits, run_dir, augment, resume)[1])
    student, distilled_row = train_distilled(recipe, splits, teacher, run_dir, resume, views)
    rows.append(distilled_row)
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}, str(run_dir / "student.safetensors"))
    results = {
        "recipe": recipe.name,
        "dataset": {"name": splits.name, "train": len(splits.train), "test": len(splits.test),
                    "transfer": len(splits.transfer) if splits.transfer is not None else 0},
        "rows": [{k: v for k, v in asdict(r).items() if k != "history"} for r in rows],
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    return {"results": results, "rows": rows}
