"""Regression tests for step-distillation defects: each failed before its fix."""

from __future__ import annotations

import pytest
import torch

from distill.diffusion import Denoiser, build_denoiser, build_process, ode_step
from distill.errors import ConfigError
from distill.tasks.steps.methods import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.dmd import DMDObjective


def _denoiser(seed: int = 0, step_conditioned: bool = False, hidden: int = 16) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(build_denoiser("mlp", (2,), 0, step_conditioned, hidden=hidden, depth=1), build_process("flow"),
                    "velocity")


def test_an_unknown_ode_solver_is_refused_not_run_as_heun():
    with pytest.raises(ConfigError, match="unknown ODE solver 'rk4'"):
        ode_step(_denoiser(), torch.randn(4, 2), 1.0, 0.5, None, "rk4")
    with pytest.raises(ConfigError, match="unknown solver 'rk4'"):
        STEP_METHODS.build("consistency", solver="rk4")


@pytest.mark.parametrize("final_steps", [3, 6, 0])
def test_progressive_needs_a_power_of_two_final_step_count(final_steps):
    with pytest.raises(ConfigError, match="power of two"):
        STEP_METHODS.build("progressive", final_steps=final_steps)


def test_progressive_refuses_a_start_that_is_not_a_power_of_two():
    with pytest.raises(ConfigError, match="start_steps must be a power of two"):
        STEP_METHODS.build("progressive", start_steps=24)


def test_a_step_conditioned_student_must_take_every_teacher_weight():
    teacher = _denoiser(hidden=16)
    fits = StepsContext(teacher, None, None, None, "heun", 4, lambda conditioned: _denoiser(1, conditioned).net)
    student = fits.student(step_conditioned=True)
    for name, value in teacher.net.state_dict().items():
        assert torch.equal(student.net.state_dict()[name], value), name
    wrong = StepsContext(teacher, None, None, None, "heun", 4,
                         lambda conditioned: _denoiser(1, conditioned, hidden=32).net)
    with pytest.raises(ConfigError, match="does not fit the teacher"):
        wrong.student(step_conditioned=True)
    other = StepsContext(teacher, None, None, None, "heun", 4,
                         lambda conditioned: build_denoiser("mlp", (2,), 3, conditioned, hidden=16, depth=1))
    with pytest.raises(ConfigError, match="does not fit the teacher"):
        other.student(step_conditioned=True)  # an extra label embedding the teacher lacks


def test_dmd_generator_and_fake_score_are_separate_parameter_groups():
    generator, fake, teacher = _denoiser(1), _denoiser(2), _denoiser(3)
    objective = DMDObjective(generator, fake, teacher, steps=1, regression=0.0, t_range=(0.02, 0.98))
    groups = objective.parameter_groups()
    assert set(groups) == {"generator", "fake"}
    assert {id(p) for p in groups["generator"]} == {id(p) for p in generator.parameters()}
    assert {id(p) for p in groups["fake"]} == {id(p) for p in fake.parameters()}
    with pytest.raises(ConfigError, match="fake_updates"):
        STEP_METHODS.build("dmd", fake_updates=0)
