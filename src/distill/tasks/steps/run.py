"""Run a ``task: steps`` recipe: teacher (cached), method, scoring, report.

The trained students are written to ``students.safetensors`` (one entry per step count,
shared networks stored once), so ``distill eval`` and ``distill export`` rebuild the
few-step generators from the run folder alone; the students of a diffusers teacher are also
written as diffusers folders (``diffusers/<steps>_steps``).
"""

from __future__ import annotations

import time
from pathlib import Path

from distill.data.generative import load_generative_data
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.diffusers_student import save_diffusers_student
from distill.diffusion.sources import is_diffusers, is_zoo
from distill.diffusion.teacher import (
    build_diffusion_model,
    build_diffusion_net,
    obtain_diffusion_model,
    step_conditioning_message,
)
from distill.engine.checkpoint import load_weights_file, save_weights_file
from distill.errors import CheckpointError, ConfigError
from distill.experiment.runner import Run
from distill.metrics.classification import accuracy
from distill.metrics.scorer import SampleRow, Scorer
from distill.tasks.steps.methods import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.base import StepMethod
from distill.tasks.steps.metrics import counting_evaluations, make_scorer, score_rows
from distill.tasks.steps.recipe import StepsRecipe

STUDENTS_FILE = "students.safetensors"
#: where the students of a diffusers teacher are also written, one diffusers folder per step count
DIFFUSERS_FOLDER = "diffusers"


def build_teacher(recipe: StepsRecipe, splits) -> Denoiser:
    """The recipe's teacher, untrained."""
    return build_diffusion_model(recipe.teacher, splits)


def steps_context(recipe: StepsRecipe, splits, teacher: Denoiser, run: Run | None) -> StepsContext:
    """What the recipe's method trains from: the frozen ``teacher``, the data, the budget, the run."""
    spec = recipe.teacher
    return StepsContext(teacher, splits, recipe.train, run, spec.solver, spec.steps,
                        lambda conditioned: build_diffusion_net(spec, splits, conditioned))


def save_students(students: dict[int, Denoiser], path: Path) -> Path:
    """Every student's network under ``"<steps>.<weight>"``; a network shared by several step counts is
    stored once (tied entries)."""
    weights = {f"{steps}.{k}": v for steps, d in students.items() for k, v in d.net.state_dict().items()}
    return save_weights_file(path, weights)


def restore_students(recipe: StepsRecipe, method: StepMethod, splits, teacher: Denoiser,
                     weights: Path) -> dict[int, Denoiser]:
    """The students saved by :func:`save_students`, loaded into fresh networks of ``method``'s shape
    (``teacher`` gives the architecture; its weights are replaced)."""
    saved = load_weights_file(weights)
    context = steps_context(recipe, splits, teacher, None)
    students = {}
    for steps in sorted({int(k.split(".", 1)[0]) for k in saved if k.split(".", 1)[0].isdigit()}):
        student = context.student(method.step_conditioned)
        prefix = f"{steps}."
        try:
            student.net.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)})
        except RuntimeError as err:
            raise CheckpointError(f"{weights} does not fit the recipe's {recipe.method.name} students: "
                                  f"{str(err).splitlines()[0]}") from None
        students[steps] = context.for_sampling(student)
    if not students:
        raise CheckpointError(f"{weights} holds no step-distillation students (expected entries '<steps>.<weight>').")
    return students


def run_steps_recipe(recipe: StepsRecipe, run: Run) -> tuple[list[SampleRow], Scorer, dict]:
    """Train (or load) the teacher, distil it with the recipe's method and score teacher and students at
    each step count; the rows, the scorer (its noise floor) and the run's details."""
    method = STEP_METHODS.build(recipe.method.name, **recipe.method.options)
    splits = load_generative_data(recipe.data.name, recipe.data.options)
    if method.step_conditioned and not is_zoo(recipe.teacher.model):
        raise ConfigError(step_conditioning_message(recipe.teacher.model))
    method.check_data(tuple(splits.input_shape))
    method.check(build_teacher(recipe, splits))  # before the teacher trains
    teacher, teacher_info = obtain_diffusion_model(recipe.data.model_dump(mode="json"), recipe.teacher, splits, run)
    scorer = make_scorer(recipe, splits, run)
    context = steps_context(recipe, splits, teacher, run)
    started = time.perf_counter()
    with counting_evaluations(teacher.net) as teacher_evaluations:
        students = method.train(context)
    student_seconds = time.perf_counter() - started
    save_students(students, run.folder / STUDENTS_FILE)
    generators = {steps: method.generator(student) for steps, student in students.items()}
    written = {}
    if is_diffusers(recipe.teacher.model):  # students saved the way the teacher came
        written = {steps: str(save_diffusers_student(student, generators[steps], steps, recipe.method.name,
                                                     run.folder / DIFFUSERS_FOLDER / f"{steps}_steps"))
                   for steps, student in students.items()}
    rows = score_rows(recipe, teacher, generators, scorer)
    budget = {"train_steps": context.train_steps, "teacher_evaluations": teacher_evaluations[0],
              "seconds": student_seconds}
    floor = {k: v for k, v in scorer.floor.items() if k != "floor_spread"}  # metric values, as every row has
    details = {"method": recipe.method.name, "floor": floor, "student_train_seconds": student_seconds,
               "scored_samples": len(scorer.real),  # evaluate.samples, capped at half the test split for floor_from: test
               "budget": budget,
               "teacher": {"steps": recipe.teacher.steps, "solver": recipe.teacher.solver, **teacher_info}}
    if written:
        details["diffusers_students"] = written
    if "floor_spread" in scorer.floor:
        details["floor_spread"] = scorer.floor["floor_spread"]
    if scorer.classifier is not None:
        details["classifier_accuracy"] = accuracy(scorer.classifier, splits.test.x, splits.test.y)
    return rows, scorer, details
