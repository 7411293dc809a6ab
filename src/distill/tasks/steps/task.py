"""The ``steps`` family in the ``TASKS`` registry: run, evaluate and export few-step generators."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from distill.data.generative import load_generative_data
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.experiment.tasks import Outcome, Task, register_task
from distill.export import export_model
from distill.tasks.steps.methods import STEP_METHODS
from distill.tasks.steps.metrics import make_scorer, score_rows
from distill.tasks.steps.recipe import StepsRecipe
from distill.tasks.steps.report import CLOUDS_FOLDER, plot_metric_vs_nfe, plot_samples, steps_table, write_clouds
from distill.tasks.steps.run import STUDENTS_FILE, build_teacher, restore_students, run_steps_recipe


class SamplerModule(nn.Module):
    """A few-step generator with its sampler as one module: ``forward(noise[, labels]) -> samples``
    at a fixed step count (what is traced for TorchScript / ONNX)."""

    def __init__(self, generator, steps: int, conditional: bool) -> None:
        super().__init__()
        self.net, self.generator, self.steps, self.conditional = generator.denoiser, generator, steps, conditional

    def forward(self, noise: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generator.sample(noise, labels if self.conditional else None, self.steps)


class StepsTask(Task):
    """Step distillation: a many-step diffusion / flow sampler into 1–4 step generators, scored
    against held-out data beside the noise floor."""

    name = "steps"
    recipe = StepsRecipe
    methods = STEP_METHODS

    def execute(self, recipe: StepsRecipe, run: Run) -> Outcome:
        rows, scorer, details = run_steps_recipe(recipe, run)
        if scorer.points:  # the generated point sets, for a viewer
            details["clouds"] = [str(p) for p in write_clouds(rows, scorer.real, run.folder / CLOUDS_FOLDER)]
        return Outcome(steps_table(rows, scorer.floor, recipe.name), details,
                       [("Samples", plot_samples(rows, scorer.real, run.folder / "samples.png")),
                        ("Metric vs NFE", plot_metric_vs_nfe(rows, scorer.floor, run.folder / "metric_vs_nfe.png"))])

    def _generators(self, folder: Path, recipe: StepsRecipe, weights: Path | None):
        splits = load_generative_data(recipe.data.name, recipe.data.options)
        method = STEP_METHODS.build(recipe.method.name, **recipe.method.options)
        students = restore_students(recipe, method, splits, build_teacher(recipe, splits),
                                    Path(weights) if weights else Path(folder) / STUDENTS_FILE)
        run = Run(folder, recipe, write_recipe=False)  # where the metric classifier trains if not cached
        return {steps: method.generator(s) for steps, s in students.items()}, splits, run

    def evaluate(self, folder: Path, recipe: StepsRecipe, weights: Path | None = None) -> Table:
        generators, splits, run = self._generators(folder, recipe, weights)
        scorer = make_scorer(recipe, splits, run)
        rows = score_rows(recipe, None, generators, scorer)
        return steps_table(rows, scorer.floor, f"{recipe.name}: evaluation")

    def export(self, folder: Path, recipe: StepsRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        generators, splits, _ = self._generators(folder, recipe, weights)
        suffix = ".pt" if fmt == "torchscript" else ".onnx"
        base = Path(out) if out else Path(folder) / "student"
        noise = torch.randn(2, *splits.input_shape)
        written = []
        for steps, generator in sorted(generators.items()):
            module = SamplerModule(generator, steps, recipe.teacher.conditional).eval()
            example = (noise, torch.zeros(2, dtype=torch.long)) if recipe.teacher.conditional else (noise,)
            path = base.with_name(f"{base.stem}_{steps}step{suffix}")
            written.append(export_model(module, example, path, fmt,
                                        input_names=["noise", "labels"][: len(example)], output_names=["samples"]))
        return written


register_task(StepsTask())
