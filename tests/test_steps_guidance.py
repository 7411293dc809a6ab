"""Guidance distillation (Meng et al., CVPR 2023): its target, that the student learns it in one
evaluation, its sampler's cost, its refusals, and the digits recipe end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from steps_fixtures import perturbed_mlp

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import build_denoiser
from distill.diffusion.process import build_process
from distill.diffusion.sampling import OdeGenerator
from distill.errors import ConfigError
from distill.experiment import Run, get_task, load_recipe
from distill.tasks.steps.methods import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.guidance import GuidanceDistillation, GuidanceObjective, guided_target, scale_input
from distill.tasks.steps.metrics import counting_evaluations
from distill.tasks.steps.objectives import flat_mean

RECIPE = Path(__file__).parents[1] / "recipes/steps/digits_guidance.yaml"
CLASSES = 3
W_RANGE = (1.0, 4.0)
QUIET = ["train.progress=false", "teacher.train.progress=false", "evaluate.classifier.train.progress=false"]


def _net(step_conditioned: bool = False, perturb: bool = True):
    """A tiny class-conditional 2-D MLP (weights N(0, 0.3) unless ``perturb`` is False)."""
    return perturbed_mlp(0, CLASSES, step_conditioned, perturb, hidden=32, depth=2)


def _teacher(guidance: float = 1.0, num_classes: int = CLASSES) -> Denoiser:
    net = _net() if num_classes else build_denoiser("mlp", (2,), 0, hidden=8, depth=1)
    return Denoiser(net, build_process("flow"), "velocity", num_classes, guidance).eval().requires_grad_(False)


def _context(teacher: Denoiser) -> StepsContext:
    """A context carrying only what the student needs: the teacher and a step-conditioned net builder."""
    return StepsContext(teacher, None, None, None, "heun", 4, lambda conditioned: _net(conditioned, perturb=False))


def _inputs(n: int = 64, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn(n, 2, generator=generator)
    t = torch.rand(n, generator=generator)
    y = torch.randint(CLASSES, (n,), generator=generator)
    return x_t, t, y


def test_guidance_is_registered():
    assert "guidance" in STEP_METHODS.names()
    assert STEP_METHODS.get("guidance") is GuidanceDistillation and GuidanceDistillation.step_conditioned


def test_scale_input_maps_the_training_range_onto_unit_interval():
    assert [scale_input(w, W_RANGE) for w in (1.0, 2.5, 4.0)] == [0.0, 0.5, 1.0]
    assert torch.allclose(scale_input(torch.tensor([1.0, 4.0]), (0.0, 8.0)), torch.tensor([0.125, 0.5]))


def test_target_is_the_teachers_cfg_output_at_each_rows_w():
    teacher = _teacher()
    x_t, t, y = _inputs()
    w = torch.linspace(0.0, 5.0, len(y))
    target = guided_target(teacher.net, x_t, t, y, w, CLASSES)
    cond = teacher.net(x_t, t, y)
    uncond = teacher.net(x_t, t, torch.full_like(y, CLASSES))
    assert not torch.allclose(cond, uncond, atol=1e-2)  # the test is not vacuous
    assert torch.allclose(target, uncond + w[:, None] * (cond - uncond), atol=1e-6)
    for scale in (1.0, 2.0, 3.5):  # the Denoiser's own CFG, one scale at a time
        expected = Denoiser(teacher.net, teacher.process, "velocity", CLASSES, scale)(x_t, t, y)
        assert torch.allclose(guided_target(teacher.net, x_t, t, y, torch.full_like(t, scale), CLASSES), expected,
                              atol=1e-6)


def test_objective_regresses_the_student_told_w_on_the_cfg_target():
    teacher = _teacher()
    objective = GuidanceObjective(_context(teacher).student(step_conditioned=True), teacher, W_RANGE, 0.999)
    x = torch.randn(32, 2)
    y = torch.randint(CLASSES, (32,))
    torch.manual_seed(5)
    loss = objective({"x": x, "y": y})["loss"]
    torch.manual_seed(5)  # the objective's draws, in its order: t, ε, w
    t = torch.rand(32)
    x_t = teacher.process.noise(x, torch.randn_like(x), t)
    w = 1.0 + 3.0 * torch.rand(32)
    pred = objective.model.net(x_t, t, y, scale_input(w, W_RANGE))
    expected = flat_mean((pred - guided_target(teacher.net, x_t, t, y, w, CLASSES)) ** 2).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    assert loss.requires_grad


def test_student_learns_the_guided_output_in_one_evaluation_and_uses_w():
    teacher = _teacher()
    student = _context(teacher).student(step_conditioned=True)
    objective = GuidanceObjective(student, teacher, W_RANGE, 0.0)
    x_t, t, y = _inputs(256)
    method = GuidanceDistillation(w_range=W_RANGE, scale=2.0)
    at_scale = method.generator(student).denoiser  # the sampler's one-evaluation denoiser

    guided = Denoiser(teacher.net, teacher.process, "velocity", CLASSES, 2.0)(x_t, t, y)  # two evaluations

    def error() -> float:
        with torch.no_grad():
            return float(((at_scale(x_t, t, y) - guided) ** 2).mean())

    with torch.no_grad():  # untrained, the student is the teacher's conditional model (w = 1)
        assert torch.allclose(at_scale(x_t, t, y), teacher.net(x_t, t, y), atol=1e-6)
    before = error()
    optimizer = torch.optim.Adam(objective.model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(2)
    for _ in range(300):
        x, y_batch = torch.randn(128, 2, generator=generator), torch.randint(CLASSES, (128,), generator=generator)
        loss = objective({"x": x, "y": y_batch})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = error()
    assert after < 0.5 * before, (before, after)
    with torch.no_grad():  # across w_range the student's output moves as the teacher's CFG output does
        low, high = (student.net(x_t, t, y, scale_input(w, W_RANGE)) for w in W_RANGE)
        teacher_low, teacher_high = (guided_target(teacher.net, x_t, t, y, torch.full_like(t, w), CLASSES)
                                     for w in W_RANGE)
    moved, teacher_moved = (high - low).abs().mean(), (teacher_high - teacher_low).abs().mean()
    assert moved > 0.5 * teacher_moved > 0.02, (moved, teacher_moved)
    assert ((high - teacher_high) ** 2).mean() < 0.25 * ((low - teacher_high) ** 2).mean()
    assert at_scale.evaluations_per_call(y) == 1


@pytest.mark.parametrize("solver", ["heun", "euler", "ddim"])
def test_student_sampler_costs_half_the_teachers_cfg_sampler(solver):
    teacher = _teacher(guidance=2.0)
    student = _context(teacher).student(step_conditioned=True)
    sampler = GuidanceDistillation(solver=solver).generator(student)
    teacher_sampler = OdeGenerator(teacher, solver)
    y = torch.randint(CLASSES, (5,))
    noise = torch.randn(5, 2)
    for steps in (1, 2, 4):
        assert 2 * sampler.evaluations(steps, y) == teacher_sampler.evaluations(steps, y)
        with counting_evaluations(student.net) as rows, counting_evaluations(teacher.net) as teacher_rows:
            sampler.sample(noise, y, steps)
            teacher_sampler.sample(noise, y, steps)
        assert rows[0] == 5 * sampler.evaluations(steps, y)  # the count is what the net really evaluates
        assert teacher_rows[0] == 5 * teacher_sampler.evaluations(steps, y)


def test_refuses_an_unconditional_teacher():
    with pytest.raises(ConfigError, match="conditional"):
        GuidanceDistillation().check(_teacher(num_classes=0))
    GuidanceDistillation().check(_teacher())  # a class-conditional one is accepted


@pytest.mark.parametrize("options, match", [
    ({"scale": 5.0}, "scale"),
    ({"scale": 0.5}, "scale"),
    ({"w_range": [4.0, 1.0]}, "w_range"),
    ({"w_range": [1.0]}, "w_range"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"ema_decay": -0.1}, "ema_decay"),
    ({"steps": [0, 4]}, "steps"),
    ({"steps": []}, "steps"),
    ({"solver": "rk4"}, "solver"),
])
def test_refuses_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        GuidanceDistillation(**options)


def test_recipe_refuses_bad_options_when_it_loads():
    with pytest.raises(ConfigError, match="inside w_range"):
        load_recipe(RECIPE, ["method.options.scale=5.0"])


def test_unconditional_teacher_is_refused_before_it_trains(tmp_path):
    recipe = load_recipe(RECIPE, [*QUIET, "teacher.conditional=false", "teacher.cfg_scale=1.0"])
    with pytest.raises(ConfigError, match="class-conditional"):
        get_task("steps").run(recipe, Run(tmp_path, recipe))
    assert not (tmp_path / "teacher").exists()


def test_digits_recipe_runs_end_to_end_and_halves_the_nfe(tmp_path):
    recipe = load_recipe(RECIPE, QUIET)
    task = get_task("steps")
    task.run(recipe, Run(tmp_path, recipe))
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    steps = recipe.teacher.steps
    teacher = next(r for r in rows if r["model"] == "teacher (heun)" and r["steps"] == steps)
    students = [r for r in rows if r["model"] == "student (guidance)"]
    assert [r["steps"] for r in students] == [steps]
    assert students[0]["nfe"] < teacher["nfe"] and 2 * students[0]["nfe"] == teacher["nfe"]
    assert (tmp_path / "guidance" / "metrics.csv").exists()
    restored = task.evaluate(tmp_path, recipe)  # students reload into step-conditioned nets
    assert [r["nfe"] for r in restored.rows if r["model"] == "student (guidance)"] == [students[0]["nfe"]]
