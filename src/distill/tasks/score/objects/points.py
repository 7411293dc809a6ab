"""The ``points`` object kind: particles in the prior's own data space (2-D points or images).

Every result is measured beside three references from the same run: an independent real draw
(the noise floor), the initial state the guidance started from, and the prior's own samples
(what the prior can do when sampled by its ODE rather than distilled into particles).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from distill.data.generative import load_generative_data
from distill.diffusion.exact import ClassConditionalExactDenoiser, ExactDenoiser
from distill.diffusion.process import build_process
from distill.diffusion.sampling import OdeGenerator
from distill.diffusion.teacher import build_diffusion_model, obtain_diffusion_model
from distill.experiment.runner import Run
from distill.metrics.classifier import obtain_metric_classifier
from distill.metrics.scorer import Scorer
from distill.tasks.score.metrics import KNOWN_MODES, ScoreRow, mode_statistics, peak_memory_mb, pixel_statistics
from distill.tasks.score.objectives import ParticlesObjective
from distill.tasks.score.objects.base import OBJECT_KINDS, ObjectKind
from distill.tasks.score.recipe import ScoreRecipe
from distill.tasks.score.report import POINT_NOTES, plot_points

PARTICLES_FILE = "particles.npz"


def particle_labels(recipe: ScoreRecipe, num_classes: int) -> Tensor | None:
    """Particle i's class (``i mod num_classes``) under a class-conditional prior, else None."""
    return torch.arange(recipe.object.count) % num_classes if recipe.prior.conditional else None


def initial_points(recipe: ScoreRecipe, shape: tuple[int, ...]) -> Tensor:
    """N(0, init_std²) particles, seeded by the run's seed."""
    generator = torch.Generator().manual_seed(recipe.train.seed)
    return recipe.object.init_std * torch.randn(recipe.object.count, *shape, generator=generator)


def obtain_points_prior(recipe: ScoreRecipe, splits, run: Run | None) -> tuple[nn.Module, dict]:
    """The exact prior of the training points (class-conditional when the recipe says so), or the
    trained diffusion / flow model (untrained when ``run`` is None, else cached or trained now)."""
    spec = recipe.prior
    if spec.kind == "exact":
        process = build_process(spec.process)
        if spec.conditional:
            return ClassConditionalExactDenoiser(splits.train.x, splits.train.y, process, splits.num_classes,
                                                 spec.cfg_scale), {}
        return ExactDenoiser(splits.train.x, process), {}
    if run is None:
        return build_diffusion_model(spec, splits), {}
    return obtain_diffusion_model(recipe.data.model_dump(mode="json"), spec, splits, run, label="prior")


def describe(points: Tensor, labels: Tensor | None, scorer: Scorer, data: str,
             shared: dict[str, float] | None = None) -> dict[str, float]:
    """The shared distribution metrics (``shared`` where already measured) plus the family's own: modes
    for toys with known modes, pixel statistics for images."""
    metrics = dict(shared) if shared is not None else scorer.score(points, labels)
    if data in KNOWN_MODES:
        metrics |= mode_statistics(points, KNOWN_MODES[data])
    if points.dim() > 2:
        metrics |= pixel_statistics(points)
    return metrics


@dataclass
class PointsContext:
    """What a points run shares between its rows: the data, the particles' labels and initial state, the
    frozen prior and the scorer (held-out points, the noise floor, the metric classifier)."""

    recipe: ScoreRecipe
    splits: object
    labels: Tensor | None
    init: Tensor
    prior: nn.Module
    prior_info: dict
    scorer: Scorer


@OBJECT_KINDS.register("points")
class PointsKind(ObjectKind):
    """Particles moved by the guidance, measured beside the real draw, the initial state and the prior's
    own samples; written as ``particles.npz``."""

    notes = tuple(POINT_NOTES)

    def prepare(self, recipe: ScoreRecipe, run: Run) -> PointsContext:
        splits = load_generative_data(recipe.data.name, recipe.data.options)
        labels = particle_labels(recipe, splits.num_classes)
        init = initial_points(recipe, splits.input_shape)
        ParticlesObjective(recipe.guidance.build(), obtain_points_prior(recipe, splits, None)[0], init,
                           recipe.train.steps, labels)
        prior, prior_info = obtain_points_prior(recipe, splits, run)
        classifier_spec = recipe.evaluate.classifier
        scorer = Scorer(splits, recipe.object.count, recipe.evaluate.seed, recipe.prior.conditional,
                        obtain_metric_classifier(recipe.data.model_dump(mode="json"), classifier_spec, splits, run),
                        classifier_spec.layer)
        return PointsContext(recipe, splits, labels, init, prior, prior_info, scorer)

    def references(self, context: PointsContext, run: Run) -> list[ScoreRow]:
        recipe, scorer, data = context.recipe, context.scorer, context.recipe.data.name
        sampled = scorer.run("prior", OdeGenerator(context.prior, recipe.prior.solver), recipe.prior.steps)
        real = scorer.reference
        return [ScoreRow("real data (noise floor)", describe(real, None, scorer, data, scorer.floor), real),
                ScoreRow("initial state", describe(context.init, context.labels, scorer, data), context.init),
                ScoreRow(f"prior ({recipe.prior.solver}, {recipe.prior.steps} steps)",
                         describe(sampled.samples, scorer.labels if scorer.conditional else None, scorer, data),
                         sampled.samples, {"nfe": sampled.nfe})]

    def distil(self, context: PointsContext, run: Run, guidance, label: str) -> tuple[ScoreRow, Tensor]:
        recipe, labels = context.recipe, context.labels
        objective = ParticlesObjective(guidance, context.prior, context.init, recipe.train.steps, labels)
        result = run.train(objective, ParticlesObjective.dataset(recipe.object.count), recipe.train, "particles")
        particles = objective.particles.detach()
        cost = {"seconds": result.seconds, "evaluations_per_step": guidance.evaluations_per_step(context.prior, labels),
                "peak_memory_mb": peak_memory_mb()}
        return ScoreRow(label, describe(particles, labels, context.scorer, recipe.data.name), particles, cost), particles

    def save(self, context: PointsContext, made: Tensor, folder: Path) -> Path:
        labels = context.labels if context.labels is not None else torch.zeros(0)
        np.savez(folder / PARTICLES_FILE, particles=made.numpy(), labels=labels.numpy())
        return folder / PARTICLES_FILE

    def details(self, context: PointsContext, row: ScoreRow) -> dict:
        return {"floor": context.scorer.floor, "train_seconds": row.cost["seconds"]}

    def figure(self, context: PointsContext, rows: list[ScoreRow], folder: Path) -> tuple[str, Path | None]:
        return "Particles", plot_points(rows, folder / "particles.png")
