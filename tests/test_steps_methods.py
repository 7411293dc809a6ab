"""Step distillation, piece by piece: processes, samplers and each method's defining identity."""

from __future__ import annotations

import math

import pytest
import torch
from steps_fixtures import perturbed_mlp
from torch import nn

from distill.diffusion.cfg import NULL_CLASS, drop_labels
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.objective import DenoisingObjective
from distill.diffusion.process import PREDICTIONS, build_process
from distill.diffusion.sampling import OdeGenerator, RenoisingGenerator, ode_step, time_points
from distill.errors import ConfigError
from distill.tasks.steps.methods import StepsContext
from distill.tasks.steps.methods.consistency import (
    ConsistencyObjective,
    boundary_coefficients,
    consistency_distance,
    consistency_function,
)
from distill.tasks.steps.methods.dmd import DMDObjective, distribution_matching_loss
from distill.tasks.steps.methods.progressive import ProgressiveObjective, two_step_target
from distill.tasks.steps.methods.reflow import Reflow, ReflowObjective
from distill.tasks.steps.methods.shortcut import (
    Shortcut,
    ShortcutGenerator,
    ShortcutObjective,
    self_consistency_target,
)

PROCESSES = ["flow", "diffusion"]
#: a natural parameterisation per process for the random-model tests
NATURAL = {"flow": "velocity", "diffusion": "eps"}


def _net(seed: int = 0, num_classes: int = 0, step_conditioned: bool = False, perturb: bool = True) -> nn.Module:
    return perturbed_mlp(seed, num_classes, step_conditioned, perturb)


def _denoiser(process: str = "flow", prediction: str | None = None, seed: int = 0, **kwargs) -> Denoiser:
    return Denoiser(_net(seed, kwargs.get("num_classes", 0)), build_process(process),
                    prediction or NATURAL[process], **kwargs)


class Constant(nn.Module):
    """``net(x, t, y, d)`` that outputs the fixed vector ``value`` for every row."""

    def __init__(self, value) -> None:
        super().__init__()
        self.value = torch.as_tensor(value, dtype=torch.float32)
        self.bias = nn.Parameter(torch.zeros(()))  # a parameter, so objectives can build optimisers

    def forward(self, x, t, y=None, d=None):
        return self.value.expand_as(x) + self.bias


class Recorder(nn.Module):
    """Wraps a net and records the (t, d) of every call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, t, y=None, d=None):
        self.calls.append((t.detach().clone(), None if d is None else d.detach().clone()))
        return self.net(x, t, y) if d is None else self.net(x, t, y, d)


def _context(teacher: Denoiser, step_conditioned_builder=None) -> StepsContext:
    """A context carrying only what the methods read before training."""
    return StepsContext(teacher, None, None, None, "heun", 4,
                        step_conditioned_builder or (lambda conditioned: _net(step_conditioned=conditioned,
                                                                              perturb=False)))


# --- processes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("prediction", sorted(PREDICTIONS))
def test_split_inverts_noise_and_target(name, prediction):
    process = build_process(name)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 1, 2, 2, generator=generator)
    eps = torch.randn(64, 1, 2, 2, generator=generator)
    t = 0.05 + 0.9 * torch.rand(64, generator=generator)
    x_t = process.noise(x0, eps, t)
    got_x0, got_eps = process.split(prediction, x_t, process.target(prediction, x0, eps, t), t)
    assert torch.allclose(got_x0, x0, atol=1e-4)
    assert torch.allclose(got_eps, eps, atol=1e-4)


def test_flow_path_is_linear_and_its_velocity_is_eps_minus_x0():
    process = build_process("flow")
    x0, eps, t = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16)
    assert torch.allclose(process.noise(x0, eps, t), (1 - t[:, None]) * x0 + t[:, None] * eps)
    assert torch.allclose(process.velocity(x0, eps, t), eps - x0)
    assert torch.allclose(process.target("velocity", x0, eps, t), eps - x0)


def test_cosine_schedule_is_variance_preserving_with_correct_derivatives():
    process = build_process("diffusion")
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    alpha, sigma, d_alpha, d_sigma = process.coefficients(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t), atol=1e-12)
    h = 1e-6
    (a_up, s_up, _, _), (a_down, s_down, _, _) = process.coefficients(t + h), process.coefficients(t - h)
    assert torch.allclose(d_alpha, (a_up - a_down) / (2 * h), atol=1e-6)
    assert torch.allclose(d_sigma, (s_up - s_down) / (2 * h), atol=1e-6)
    # the log-SNR spans exactly [logsnr_min, logsnr_max] = [-15, 15] and falls monotonically
    a_end, s_end, _, _ = process.coefficients(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(torch.log(a_end**2 / s_end**2), torch.tensor([15.0, -15.0], dtype=torch.float64))
    assert (torch.diff(alpha / sigma) < 0).all()
    with pytest.raises(ConfigError, match="logsnr_min"):
        build_process("diffusion", logsnr_min=5.0, logsnr_max=5.0)


def test_unknown_prediction_is_a_config_error():
    process = build_process("flow")
    x, t = torch.randn(4, 2), torch.rand(4)
    with pytest.raises(ConfigError, match="velocity"):
        process.target("score", x, x, t)
    with pytest.raises(ConfigError, match="unknown prediction"):
        process.split("score", x, x, t)
    with pytest.raises(ConfigError, match="unknown prediction"):
        Denoiser(_net(), process, "score")


def test_eps_prediction_on_the_flow_path_is_refused():
    # α(1) = 0 on the flow path: an ε-predictor cannot give x0 from pure noise, every sampler would NaN.
    with pytest.raises(ConfigError, match="'eps'"):
        Denoiser(_net(), build_process("flow"), "eps")
    Denoiser(_net(), build_process("diffusion"), "eps")  # fine where α never reaches 0


# --- samplers -------------------------------------------------------------------------------------------

C = torch.tensor([0.5, -1.25])


@pytest.mark.parametrize("solver", ["ddim", "euler", "heun"])
@pytest.mark.parametrize("steps", [1, 4])
def test_ode_solvers_land_on_a_constant_x0_on_the_flow_path(solver, steps):
    # x0 ≡ c makes every flow trajectory a straight line to c: all three solvers are exact.
    denoiser = Denoiser(Constant(C), build_process("flow"), "x0")
    noise = torch.randn(8, 2)
    sample = OdeGenerator(denoiser, solver).sample(noise, None, steps)
    assert torch.isfinite(sample).all()
    assert torch.allclose(sample, C.expand(8, 2), atol=1e-5)


@pytest.mark.parametrize("steps", [1, 4])
def test_ddim_lands_on_a_constant_x0_on_the_cosine_path(steps):
    process = build_process("diffusion")
    denoiser = Denoiser(Constant(C), process, "x0")
    noise = torch.randn(8, 2).clamp(-1.5, 1.5)
    sample = OdeGenerator(denoiser, "ddim").sample(noise, None, steps)
    assert torch.allclose(sample, C.expand(8, 2), atol=1e-3)
    # DDIM keeps ε fixed along the way, so the end is exactly α(0)·c + σ(0)·ε(1).
    (a1,), (s1,), _, _ = process.coefficients(torch.ones(1))
    (a0,), (s0,), _, _ = process.coefficients(torch.zeros(1))
    assert torch.allclose(sample, a0 * C + s0 * (noise - a1 * C) / s1, atol=1e-5)


def test_evaluations_count_heun_2n_minus_1_and_guidance_twice():
    plain = _denoiser()
    assert OdeGenerator(plain, "ddim").evaluations(4) == 4
    assert OdeGenerator(plain, "euler").evaluations(4) == 4
    assert OdeGenerator(plain, "heun").evaluations(4) == 7  # the last step into t = 0 is Euler
    assert OdeGenerator(plain, "heun").evaluations(1) == 1
    y = torch.tensor([0, 1, 2])
    guided = _denoiser(num_classes=3, cfg_scale=2.0)
    assert OdeGenerator(guided, "heun").evaluations(4, y) == 14
    assert OdeGenerator(guided, "ddim").evaluations(4, y) == 8
    assert OdeGenerator(guided, "ddim").evaluations(4, None) == 4  # no labels, no guidance
    assert OdeGenerator(_denoiser(num_classes=3, cfg_scale=1.0), "heun").evaluations(4, y) == 7
    assert OdeGenerator(plain, "heun").evaluations(4, y) == 7  # unconditional: labels ignored


def test_guidance_combines_conditional_and_null_predictions():
    denoiser = _denoiser(num_classes=3, cfg_scale=3.0)
    x, t, y = torch.randn(5, 2), torch.rand(5), torch.tensor([0, 1, 2, 0, 1])
    cond, null = denoiser.net(x, t, y), denoiser.net(x, t, torch.full_like(y, 3))
    assert not torch.allclose(cond, null)
    assert torch.allclose(denoiser(x, t, y), null + 3.0 * (cond - null), atol=1e-5)
    assert torch.allclose(denoiser(x, t, None), denoiser.net(x, t, None))


def test_time_grid_and_solver_checks():
    assert time_points(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    for bad in (0, -1, 2.0):
        with pytest.raises(ConfigError, match="positive integer"):
            time_points(bad)
    with pytest.raises(ConfigError, match="heun"):
        OdeGenerator(_denoiser(), "rk4")


def test_renoising_generator_predicts_then_renoises_on_the_grid():
    times = []

    def predict(x, t, y):
        times.append(t.clone())
        return C.expand_as(x).clone()

    generator = RenoisingGenerator(predict, build_process("flow"), evaluations_per_call=2)
    sample = generator.sample(torch.randn(6, 2), None, 4)
    assert torch.allclose(sample, C.expand(6, 2))
    assert [float(t[0]) for t in times] == [1.0, 0.75, 0.5, 0.25]
    assert generator.evaluations(4) == 8


# --- progressive distillation ---------------------------------------------------------------------------


class _Fixed(nn.Module):
    """A net that returns a given tensor (for a batch of matching size)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, x, t, y=None, d=None):
        return self.output


@pytest.mark.parametrize("name", PROCESSES)
def test_two_step_target_turns_one_ddim_step_into_two_teacher_steps(name):
    teacher = _denoiser(name, seed=3)
    process = teacher.process
    n = 4
    generator = torch.Generator().manual_seed(1)
    t = torch.randint(1, n + 1, (32,), generator=generator).float() / n
    s = t - 1.0 / n
    x_t = torch.randn(32, 2, generator=generator)
    with torch.no_grad():
        target = two_step_target(teacher, x_t, t, s, None)
        mid = ode_step(teacher, x_t, t, (t + s) / 2, None, "ddim")
        two_steps = ode_step(teacher, mid, (t + s) / 2, s, None, "ddim")
        # one DDIM step of a student whose x0 prediction is the target
        alpha_t, sigma_t, _, _ = (c[:, None] for c in process.coefficients(t))
        alpha_s, sigma_s, _, _ = (c[:, None] for c in process.coefficients(s))
        one_step = alpha_s * target + sigma_s * (x_t - alpha_t * target) / sigma_t
        via_library = ode_step(Denoiser(_Fixed(target), process, "x0"), x_t, t, s, None, "ddim")
    assert not torch.allclose(two_steps, x_t, atol=1e-2)  # the teacher really moves the points
    assert torch.allclose(one_step, two_steps, atol=1e-4)
    assert torch.allclose(via_library, two_steps, atol=1e-4)


def test_progressive_objective_trains_only_the_student():
    teacher, student = _denoiser(seed=1), _denoiser(seed=2)
    out = ProgressiveObjective(student, teacher, steps=2, ema_decay=0.999)({"x": torch.randn(16, 2), "y": None})
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


# --- consistency distillation ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,prediction", [("flow", "velocity"), ("flow", "x0"), ("diffusion", "eps")])
def test_consistency_function_is_the_identity_at_t0(name, prediction):
    model = _denoiser(name, prediction)
    x = torch.randn(8, 2)
    assert torch.equal(consistency_function(model, x, torch.zeros(8), None, 10.0), x)
    away = consistency_function(model, x, torch.full((8,), 0.5), None, 10.0)
    assert torch.isfinite(away).all() and not torch.allclose(away, x)


def test_boundary_coefficients():
    skip, out = boundary_coefficients(torch.zeros(3), 10.0)
    assert torch.equal(skip, torch.ones(3)) and torch.equal(out, torch.zeros(3))
    skip, out = boundary_coefficients(torch.tensor([0.1]), 10.0)  # (scale·t)² = 1, σ_data² = 0.25
    assert skip.item() == pytest.approx(0.25 / 1.25)
    assert out.item() == pytest.approx(1 / math.sqrt(1.25))


def test_consistency_distance_l2_and_huber():
    a, b = torch.tensor([[1.0, 2.0], [3.0, 3.0]]), torch.tensor([[0.0, 0.0], [3.0, 3.0]])
    assert consistency_distance(a, b, "l2").tolist() == pytest.approx([2.5, 0.0])  # (1 + 4) / 2
    c = 0.00054 * math.sqrt(2)
    assert consistency_distance(a, b, "huber").tolist() == pytest.approx([math.sqrt(5 + c * c) - c, 0.0])


def _consistency(student, teacher, **kwargs):
    options = {"intervals": 4, "skip": 1, "solver": "ddim", "distance": "l2", "target_decay": 0.5, "scale": 10.0,
               "ema_decay": 0.999}
    return ConsistencyObjective(student, teacher, **{**options, **kwargs})


def test_consistency_target_moves_halfway_to_the_student_after_an_optimizer_step_only():
    student, teacher = _denoiser(seed=1), _denoiser(seed=2)
    objective = _consistency(student, teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    old = [p.detach().clone() for p in objective.target.parameters()]
    for mode in (False, True):  # forward passes never touch the target; optimizer steps do
        objective.train(mode)
        out = objective({"x": torch.randn(8, 2), "y": None})
        assert all(torch.equal(o, p) for o, p in zip(old, objective.target.parameters()))
    objective.after_optimizer_step(1)
    for before, ema, online in zip(old, objective.target.parameters(), student.parameters()):
        assert not torch.allclose(before, online)
        assert torch.allclose(ema, (before + online) / 2, atol=1e-6)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert any(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in (*teacher.parameters(), *objective.target.parameters(),
                                        *objective.ema.parameters()))


def test_consistency_loss_is_finite_at_the_data_end_for_an_x0_model_on_the_flow_path():
    # skip = intervals puts every row at t = 1, s = 0, where x0 prediction leaves ε undefined.
    objective = _consistency(_denoiser("flow", "x0", seed=1), _denoiser("flow", "x0", seed=2), skip=4)
    assert torch.isfinite(objective({"x": torch.randn(8, 2), "y": None})["loss"])


# --- rectified flow -------------------------------------------------------------------------------------


def test_reflow_loss_is_the_mse_to_the_pair_velocity():
    v = torch.tensor([0.3, -0.7])
    objective = ReflowObjective(Denoiser(Constant(v), build_process("flow"), "velocity"), 0.999)
    sample, noise = torch.randn(10, 2), torch.randn(10, 2)
    expected = ((v - (noise - sample)) ** 2).mean()
    assert torch.allclose(objective({"sample": sample, "noise": noise, "y": None})["loss"], expected, atol=1e-6)


def test_reflow_distillation_draws_t_on_the_k_step_grid():
    recorder = Recorder(_net())
    objective = ReflowObjective(Denoiser(recorder, build_process("flow"), "velocity"), 0.999, steps=4)
    objective({"sample": torch.randn(200, 2), "noise": torch.randn(200, 2), "y": None})
    (t, _), = recorder.calls
    assert torch.allclose(t * 4, torch.round(t * 4))
    assert set(torch.round(t * 4).long().tolist()) == {1, 2, 3, 4}
    recorder.calls.clear()
    ReflowObjective(Denoiser(recorder, build_process("flow"), "velocity"), 0.999)({"sample": torch.randn(200, 2), "noise": torch.randn(200, 2), "y": None})
    (t, _), = recorder.calls
    assert ((t >= 0) & (t < 1)).all() and len(set(t.tolist())) == 200


@pytest.mark.parametrize("name,prediction", [("diffusion", "v"), ("flow", "x0")])
def test_velocity_methods_refuse_other_teachers(name, prediction):
    # shortcut trains and samples the raw net output as dx/dt, so the teacher must output the flow velocity
    with pytest.raises(ConfigError, match="flow"):
        Shortcut(min_step=4).check(_denoiser(name, prediction))  # before anything trains
    with pytest.raises(ConfigError, match="flow"):
        Shortcut(min_step=4).train(_context(_denoiser(name, prediction)))
    # reflow regresses any teacher's own target, but its Chamfer loss scores one Euler step of a velocity
    Reflow().check(_denoiser(name, prediction))
    with pytest.raises(ConfigError, match="flow"):
        Reflow(distill_loss="chamfer").check(_denoiser(name, prediction))


# --- distribution matching ------------------------------------------------------------------------------


def test_distribution_matching_gradient_is_the_normalised_score_difference():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 2, generator=generator).requires_grad_(True)
    real, fake = torch.randn(4, 3, 2, generator=generator), torch.randn(4, 3, 2, generator=generator)
    loss = distribution_matching_loss(x, real, fake)
    loss.backward()
    weight = 1.0 / (x.detach() - real).abs().mean(dim=(1, 2), keepdim=True)
    grad = (fake - real) * weight
    assert torch.allclose(x.grad, grad / x.numel(), atol=1e-7)
    assert loss.item() == pytest.approx(0.5 * grad.pow(2).mean().item(), rel=1e-5)
    assert torch.dot(x.grad.flatten(), (real - fake).flatten()) < 0  # descent moves x towards the real x0


@pytest.mark.parametrize("steps", [1, 2])
def test_dmd_objective_trains_generator_and_fake_score_but_not_the_teacher(steps):
    generator, fake, teacher = _denoiser(seed=1), _denoiser(seed=2), _denoiser(seed=3)
    objective = DMDObjective(generator, fake, teacher, steps=steps, regression=0.25, t_range=(0.02, 0.98))
    out = objective({"sample": torch.randn(16, 2), "noise": torch.randn(16, 2), "y": torch.zeros(16, dtype=torch.long)})
    assert set(out) == {"loss", "dm", "regression", "fake"}
    assert all(torch.isfinite(v) for v in out.values())
    assert torch.allclose(out["loss"], out["dm"] + out["regression"] + out["fake"])
    out["loss"].backward()
    for net in (generator, fake):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_dmd_generator_inputs_lie_on_the_k_step_grid():
    generator = _denoiser(seed=1)
    objective = DMDObjective(generator, _denoiser(seed=2), _denoiser(seed=3), 4, 0.0, (0.02, 0.98))
    noise = torch.randn(200, 2)
    x_t, t = objective.generator_inputs(noise, None)
    assert set(t.tolist()) == {1.0, 0.75, 0.5, 0.25}
    assert torch.equal(x_t[t == 1], noise[t == 1])  # pure noise at t = 1, re-noised samples elsewhere
    assert not torch.allclose(x_t[t < 1], noise[t < 1])


# --- shortcut models ------------------------------------------------------------------------------------


def test_self_consistency_target_of_a_constant_velocity_is_that_velocity():
    v = torch.tensor([0.4, -0.2])
    model = Denoiser(Constant(v), build_process("flow"), "velocity")
    d = torch.full((5,), 0.25)
    target = self_consistency_target(model, torch.randn(5, 2), torch.full((5,), 0.75), d, None)
    assert torch.allclose(target, v.expand(5, 2))


def test_self_consistency_target_chains_two_steps_of_d():
    recorder = Recorder(_net(step_conditioned=True))
    model = Denoiser(recorder, build_process("flow"), "velocity")
    x, t, d = torch.randn(6, 2), torch.full((6,), 0.75), torch.full((6,), 0.25)
    target = self_consistency_target(model, x, t, d, None)
    first = model(x, t, None, d)
    assert torch.allclose(target, (first + model(x - 0.25 * first, t - d, None, d)) / 2)
    assert [float(call[0][0]) for call in recorder.calls[:2]] == [0.75, 0.5]


def test_shortcut_objective_draws_consistency_times_on_multiples_of_2d_and_bootstraps_from_the_ema():
    recorder = Recorder(_net(step_conditioned=True, seed=1))
    student = Denoiser(recorder, build_process("flow"), "velocity")
    objective = ShortcutObjective(student, _denoiser(seed=2), min_step=16, consistency=0.5, ema_decay=0.999)
    out = objective({"x": torch.randn(256, 2), "y": None})
    assert len(recorder.calls) == 1  # the online student only predicts; the EMA builds the targets
    t, step = recorder.calls[-1]  # the student's prediction: consistency rows first, then flow rows
    rows = torch.arange(256) < 128
    assert torch.equal(step[~rows], torch.full((128,), 1 / 16))  # flow rows train the smallest step
    d = step[rows] / 2
    t_self = t[rows]
    assert set(d.tolist()) <= {0.5, 0.25, 0.125, 0.0625} and len(set(d.tolist())) == 4
    # only the points a sampler of step 2d visits: t = 1, 1 − 2d, ..., 2d
    assert torch.allclose(t_self / (2 * d), torch.round(t_self / (2 * d)), atol=1e-5)
    assert (t_self - 2 * d >= -1e-6).all() and (t_self <= 1 + 1e-6).all()
    assert (t_self == 1).any() and (t_self[d == 0.0625] < 1).any()
    # the EMA's two calls build the 2d target from two chained steps of d from the same rows
    (t1, d1), (t2, d2) = objective.ema.net.calls[-2:]
    assert torch.equal(t1, t_self) and torch.equal(d1, d) and torch.equal(d2, d)
    assert torch.allclose(t2, t_self - d)
    assert torch.allclose(out["loss"], (out["self_consistency"] + out["flow"]) / 2, atol=1e-6)


def test_step_conditioned_student_starts_as_the_teacher():
    teacher = _denoiser(seed=4, cfg_scale=1.0)
    student = _context(teacher).student(step_conditioned=True)
    assert student.net.embed.step is not None and student.cfg_scale == 1.0
    assert all(p.requires_grad for p in student.parameters())
    x, t = torch.randn(8, 2), torch.rand(8)
    with torch.no_grad():
        expected = teacher(x, t)
        assert torch.allclose(student(x, t, None, torch.zeros(8)), expected, atol=1e-6)
        assert torch.allclose(student(x, t, None, torch.full((8,), 0.25)), expected, atol=1e-6)


def test_shortcut_generator_takes_k_euler_steps_of_size_one_over_k():
    v = torch.tensor([0.4, -0.2])
    recorder = Recorder(Constant(v))
    generator = ShortcutGenerator(Denoiser(recorder, build_process("flow"), "velocity"))
    noise = torch.randn(5, 2)
    assert torch.allclose(generator.sample(noise, None, 4), noise - v, atol=1e-6)
    assert [float(t[0]) for t, _ in recorder.calls] == [1.0, 0.75, 0.5, 0.25]
    assert all(torch.equal(d, torch.full((5,), 0.25)) for _, d in recorder.calls)
    assert generator.evaluations(4) == 4


# --- teacher training -----------------------------------------------------------------------------------


def _toy_batch(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=generator)
    angle = y.float() * math.pi / 2
    centres = 2 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + 0.1 * torch.randn(n, 2, generator=generator), y


@pytest.mark.parametrize("name", PROCESSES)
def test_denoising_objective_decreases_under_adam(name):
    model = Denoiser(_net(perturb=False), build_process(name), NATURAL[name])
    objective = DenoisingObjective(model)
    x, y = _toy_batch()

    def fixed_draw_loss() -> float:
        torch.manual_seed(123)  # the same t and ε before and after training
        with torch.no_grad():
            return objective({"x": x, "y": y})["loss"].item()

    before = fixed_draw_loss()
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-2)
    for _ in range(30):
        loss = objective({"x": x, "y": y})["loss"]
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_draw_loss()
    assert after < 0.8 * before


def test_conditional_objective_refuses_labels_out_of_range():
    objective = DenoisingObjective(_denoiser(num_classes=3), cond_drop=0.1)
    x = torch.randn(4, 2)
    assert torch.isfinite(objective({"x": x, "y": torch.tensor([0, 1, 2, 2])})["loss"])
    for bad in ([0, 1, 2, 3], [-1, 0, 1, 2]):
        with pytest.raises(ConfigError, match="0..2"):
            objective({"x": x, "y": torch.tensor(bad)})
    DenoisingObjective(_denoiser())({"x": x, "y": torch.tensor([7, 8, 9, 10])})  # unconditional: labels ignored
    with pytest.raises(ConfigError, match="cond_drop"):
        DenoisingObjective(_denoiser(), cond_drop=1.0)


def test_drop_labels():
    y = torch.tensor([0, 1, 2, 1])
    assert torch.equal(drop_labels(y, 1.0), torch.full((4,), NULL_CLASS))
    assert drop_labels(y, 0.0) is y
    torch.manual_seed(0)
    dropped = drop_labels(torch.zeros(10_000, dtype=torch.long), 0.3)
    assert set(dropped.unique().tolist()) == {0, NULL_CLASS}
    assert abs((dropped == NULL_CLASS).float().mean().item() - 0.3) < 0.02
