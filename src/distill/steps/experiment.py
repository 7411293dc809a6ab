"""Run a ``task: steps`` recipe: teacher (cached), method, scoring, report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from distill.engine.objectives import SupervisedObjective
from distill.engine.trainer import train
from distill.models import build_model
from distill.steps.data import load_generative_data
from distill.steps.denoiser import Denoiser
from distill.steps.evaluate import SampleRow, Scorer
from distill.steps.methods import STEP_METHODS, StepsContext
from distill.steps.methods.base import frozen
from distill.steps.nets import build_denoiser
from distill.steps.process import build_process
from distill.recipe import dump_recipe
from distill.steps.recipe import StepsRecipe
from distill.steps.report import write_steps_report
from distill.steps.sampling import OdeGenerator
from distill.steps.teacher import DenoisingObjective
from distill.teachers import load_cached_teacher, store_teacher

TRAIN_ONLY = {"progress", "tensorboard", "log_every"}


def _cached(model: nn.Module, spec: dict, fit) -> dict:
    """Load ``model`` from the content-hash cache, or ``fit()`` it and store it there."""
    info = load_cached_teacher(model, spec)
    if info is None:
        info = fit()
        store_teacher(model, spec, info)
    return info


def build_teacher_net(recipe: StepsRecipe, splits, step_conditioned: bool = False) -> nn.Module:
    """A fresh network of the teacher's architecture."""
    spec = recipe.teacher
    return build_denoiser(spec.model, splits.input_shape, splits.num_classes if spec.conditional else 0,
                          step_conditioned, **spec.options)


def obtain_generative_teacher(recipe: StepsRecipe, splits, folder: Path, resume: bool = False) -> tuple[Denoiser, dict]:
    """The recipe's teacher, from the cache or trained on the engine (denoising or flow matching)."""
    spec = recipe.teacher
    torch.manual_seed(spec.train.seed)
    net = build_teacher_net(recipe, splits)
    denoiser = Denoiser(net, build_process(spec.process), spec.prediction,
                        splits.num_classes if spec.conditional else 0, spec.guidance, spec.clip)
    cache_spec = {"kind": "generative-teacher", "data": recipe.data.model_dump(),
                  **spec.model_dump(exclude={"guidance", "clip", "solver", "steps", "train"}),
                  "train": spec.train.model_dump(exclude=TRAIN_ONLY)}

    def fit() -> dict:
        result = train(DenoisingObjective(denoiser, spec.cond_drop if spec.conditional else 0.0), splits.train,
                       spec.train, folder, resume=resume, description="teacher")
        return {"seconds": result.seconds, "loss": result.final.get("train_loss")}

    info = _cached(denoiser, cache_spec, fit)
    return frozen(denoiser), info


def obtain_classifier(recipe: StepsRecipe, splits, folder: Path) -> nn.Module | None:
    """The feature classifier of the image metrics (None for 2-D data), cached like teachers."""
    if len(splits.input_shape) < 2:
        return None
    spec = recipe.evaluate.classifier
    torch.manual_seed(spec.train.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes, **spec.options)
    cache_spec = {"kind": "metric-classifier", "data": recipe.data.model_dump(), "model": spec.model,
                  "options": spec.options, "train": spec.train.model_dump(exclude=TRAIN_ONLY)}

    def fit() -> dict:
        result = train(SupervisedObjective(model), splits.train, spec.train, folder, description="classifier")
        return {"seconds": result.seconds}

    _cached(model, cache_spec, fit)
    return frozen(model)


def run_steps_recipe(recipe: StepsRecipe, run_dir: Path, resume: bool = False) -> dict:
    """Train (or load) the teacher, distil it with the recipe's method, score teacher and
    students at each step count, and write results.json, report.md and the plots."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    method = STEP_METHODS.build(recipe.method.name, **recipe.method.options)
    splits = load_generative_data(recipe.data.name, recipe.data.options)
    teacher, teacher_info = obtain_generative_teacher(recipe, splits, run_dir / "teacher", resume)
    classifier = obtain_classifier(recipe, splits, run_dir / "classifier")
    spec = recipe.teacher
    context = StepsContext(teacher, splits, recipe.train, run_dir, spec.solver, spec.steps,
                           lambda conditioned: build_teacher_net(recipe, splits, conditioned), resume)
    started = time.perf_counter()
    students = method.run(context)
    student_seconds = time.perf_counter() - started
    scorer = Scorer(splits, recipe.evaluate.samples, recipe.evaluate.seed, spec.conditional, classifier,
                    recipe.evaluate.classifier.layer)
    sampler = OdeGenerator(teacher, spec.solver)
    teacher_steps = sorted({*recipe.evaluate.teacher_steps, spec.steps}) if recipe.evaluate.teacher_steps else []
    rows: list[SampleRow] = [scorer.run(f"teacher ({spec.solver})", sampler, steps) for steps in teacher_steps]
    rows += [scorer.run(f"student ({recipe.method.name})", generator, steps)
             for steps, generator in sorted(students.items())]
    results = {"name": recipe.name, "method": recipe.method.name, "floor": scorer.floor,
               "teacher": {"steps": spec.steps, "solver": spec.solver, **teacher_info},
               "student_train_seconds": student_seconds,
               "rows": [{"model": r.model, "steps": r.steps, "nfe": r.nfe, "ms_per_sample": r.ms_per_sample,
                         **r.metrics} for r in rows]}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    write_steps_report(rows, scorer, run_dir, recipe.name)
    return {"rows": rows, "results": results}
