"""The step-distillation family's evaluation: teacher and students sampled and scored on held-out data
(the shared :class:`~distill.metrics.scorer.Scorer`), and the teacher evaluations a method spends."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from distill.data.generative import is_point_sets
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.sampling import OdeGenerator
from distill.experiment.runner import Run
from distill.metrics.classifier import obtain_metric_classifier
from distill.metrics.scorer import SampleRow, Scorer
from distill.tasks.steps.recipe import StepsRecipe


def make_scorer(recipe: StepsRecipe, splits, run: Run) -> Scorer:
    """The scorer of the recipe's evaluation (held-out points, feature classifier for images, Chamfer
    distances for point sets)."""
    evaluate, spec = recipe.evaluate, recipe.evaluate.classifier
    points = is_point_sets(recipe.data.name)
    classifier = None if points else obtain_metric_classifier(recipe.data.model_dump(mode="json"), spec, splits, run)
    return Scorer(splits, evaluate.samples, evaluate.seed, recipe.teacher.conditional, classifier, spec.layer,
                  evaluate.floor_from, evaluate.bootstrap, points)


def score_rows(recipe: StepsRecipe, teacher: Denoiser | None, generators: dict, scorer: Scorer) -> list[SampleRow]:
    """The teacher at each evaluated step count (unless None) and every student generator, scored."""
    spec = recipe.teacher
    teacher_steps = sorted({*recipe.evaluate.teacher_steps, spec.steps}) if recipe.evaluate.teacher_steps else []
    rows = []
    if teacher is not None:
        sampler = OdeGenerator(teacher, spec.solver)
        rows = [scorer.run(f"teacher ({spec.solver})", sampler, steps) for steps in teacher_steps]
    return rows + [scorer.run(f"student ({recipe.method.name})", generator, steps)
                   for steps, generator in sorted(generators.items())]


@contextmanager
def counting_evaluations(net: nn.Module):
    """Count the rows ``net`` evaluates inside the block: ``with counting_evaluations(teacher.net) as
    count: ...; count[0]`` is the number of per-sample network evaluations (teacher NFE spent)."""
    count = [0]
    handle = net.register_forward_hook(lambda module, args, output: count.__setitem__(0, count[0] + len(output)))
    try:
        yield count
    finally:
        handle.remove()
