"""The step methods against their reference implementations (issue 12): each test here failed before the fix.

DMD2's two-time-scale update and fresh noise, backward simulation through the generator's own chain,
EMA students, no x0 clamp on the training path, Heun's Euler last step (2N − 1 evaluations).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from distill.data.tensors import TensorDictDataset
from distill.data.toys import toy_dataset
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import build_denoiser
from distill.diffusion.process import build_process
from distill.diffusion.sampling import OdeGenerator, RenoisingGenerator
from distill.engine.config import GroupConfig, TrainConfig
from distill.engine.trainer import train
from distill.experiment.runner import Run
from distill.tasks.steps.methods import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.dmd import DMDObjective, backward_simulation, generate
from distill.tasks.steps.methods.progressive import ProgressiveObjective


def _net(seed: int, step_conditioned: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    net = build_denoiser("mlp", (2,), 0, step_conditioned, hidden=16, depth=1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


def _denoiser(seed: int, clip: float | None = None) -> Denoiser:
    return Denoiser(_net(seed), build_process("flow"), "velocity", clip=clip)


class Calls(nn.Module):
    """Wraps a net; records the inputs (x, t) of every call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, t, y=None, d=None):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.net(x, t, y) if d is None else self.net(x, t, y, d)


# --- DMD2 -------------------------------------------------------------------------------------------------


def _params(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def test_dmd2_updates_the_fake_score_five_times_per_generator_step(tmp_path):
    generator, fake, teacher = _denoiser(1), _denoiser(2), _denoiser(3)
    objective = DMDObjective(generator, fake, teacher, 1, 0.0, (0.02, 0.98), generator_every=5)
    seen = []
    hook = objective.after_optimizer_step

    def record(step: int) -> None:
        hook(step)
        seen.append((_params(objective.model), _params(objective.fake)))

    objective.after_optimizer_step = record
    data = toy_dataset("8gaussians", 64, 16).train
    config = TrainConfig(steps=10, batch_size=16, lr=1e-2, progress=False, groups={"generator": GroupConfig(every=5)})
    before = (_params(generator), _params(fake))
    train(objective, TensorDictDataset(x=data.x, y=data.y), config, tmp_path)
    generator_moved = [not torch.equal(a[0], b[0]) for a, b in zip([before, *seen], seen)]
    fake_moved = [not torch.equal(a[1], b[1]) for a, b in zip([before, *seen], seen)]
    assert generator_moved == [False, False, False, False, True] * 2
    assert all(fake_moved)


def test_dmd2_defaults_are_the_papers_five_to_one_with_separate_clipping():
    method = STEP_METHODS.build("dmd")
    assert method.fake_updates == 5 and method.regression == 0.0
    context = StepsContext(_denoiser(0), None, TrainConfig(steps=10, groups={"fake": GroupConfig(max_grad_norm=1.0)}),
                           None, "heun", 4, lambda conditioned: _net(0, conditioned))
    groups = method.groups(context)
    assert groups["generator"].every == 5 and groups["generator"].max_grad_norm == 10.0
    assert groups["fake"].every == 1 and groups["fake"].max_grad_norm == 1.0  # the recipe's own value wins


def test_dmd2_distribution_matching_uses_fresh_noise_and_regression_the_pairs():
    recorder = Calls(_net(1))
    generator = Denoiser(recorder, build_process("flow"), "velocity")
    objective = DMDObjective(generator, _denoiser(2), _denoiser(3), 1, 0.5, (0.02, 0.98))
    pair_noise = torch.randn(32, 2)
    batch = {"sample": torch.randn(32, 2), "noise": pair_noise, "y": torch.zeros(32, dtype=torch.long),
             "x": torch.randn(32, 2)}
    objective(batch)
    (dm_input, dm_t), (regression_input, regression_t) = recorder.calls
    assert not torch.allclose(dm_input, pair_noise)  # the DM signal reaches noise outside the pairs
    assert torch.equal(regression_input, pair_noise) and torch.equal(regression_t, torch.ones(32))


def test_dmd2_skips_the_generator_loss_on_fake_only_steps():
    recorder = Calls(_net(1))
    generator = Denoiser(recorder, build_process("flow"), "velocity")
    objective = DMDObjective(generator, _denoiser(2), _denoiser(3), 1, 0.0, (0.02, 0.98), generator_every=5)
    batch = {"x": torch.randn(8, 2), "y": torch.zeros(8, dtype=torch.long)}
    out = objective(batch)  # the first optimizer step is a fake-only step
    out["loss"].backward()
    assert all(p.grad is None for p in generator.parameters())
    assert any(p.grad is not None for p in objective.fake.parameters())
    assert set(out) == {"loss", "dm", "fake"} and float(out["dm"]) == 0.0
    objective.after_optimizer_step(4)  # four steps done: the fifth updates the generator
    objective.zero_grad()
    objective(batch)["loss"].backward()
    assert any(p.grad is not None for p in generator.parameters())


@pytest.mark.parametrize("steps", [3, 4])
def test_backward_simulation_equals_the_generators_own_sampling_chain(steps):
    generator = _denoiser(1)
    noise = torch.randn(16, 2)
    calls = []

    def predict(x, t, y):
        calls.append(x.clone())
        return generate(generator, x, t, y)

    torch.manual_seed(7)
    RenoisingGenerator(predict, generator.process).sample(noise, None, steps)
    for level in range(steps):
        torch.manual_seed(7)
        inputs = backward_simulation(generator, noise, None, steps, torch.full((16,), level))
        assert torch.allclose(inputs, calls[level], atol=1e-6)
    # per-row levels pick each row's own point of the chain
    torch.manual_seed(7)
    mixed = torch.arange(16) % steps
    inputs = backward_simulation(generator, noise, None, steps, mixed)
    expected = torch.stack([calls[int(level)][row] for row, level in enumerate(mixed)])
    assert torch.allclose(inputs, expected, atol=1e-6)


def test_dmd2_gan_head_trains_on_the_fake_score_and_the_generator_only_through_its_samples():
    generator, fake = _denoiser(1), _denoiser(2)
    objective = DMDObjective(generator, fake, _denoiser(3), 1, 0.0, (0.02, 0.98), gan=0.1, gan_discriminator=0.5)
    out = objective({"x": torch.randn(16, 2), "y": torch.zeros(16, dtype=torch.long)})
    assert {"gan", "discriminator"} <= set(out)
    groups = objective.parameter_groups()
    assert {id(p) for p in objective.head.parameters()} <= {id(p) for p in groups["fake"]}
    # the generator's GAN loss alone moves the generator, never the fake score or the head
    objective.zero_grad()
    objective.generator_losses({}, generate(generator, torch.randn(16, 2), torch.ones(16), None), None)["gan"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert all(p.grad is None for p in groups["fake"])


# --- EMA students -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class RecordingContext(StepsContext):
    """A context that keeps every objective it trains."""

    objectives: list = dataclasses.field(default_factory=list)

    def stage(self, objective, data, label, config=None):
        self.objectives.append(objective)
        return super().stage(objective, data, label, config)


METHODS = {
    "progressive": {"final_steps": 1, "start_steps": 2},
    "consistency": {"intervals": 4},
    "reflow": {"pairs": 64, "distill_steps": None},
    "dmd": {"fake_updates": 1},
    "shortcut": {"min_step": 4},
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_ema_is_what_samples(name, tmp_path):
    method = STEP_METHODS.build(name, **METHODS[name], ema_decay=0.9)
    splits = toy_dataset("8gaussians", 64, 16)
    teacher = _denoiser(3, clip=5.0).requires_grad_(False)
    config = TrainConfig(steps=6, batch_size=16, lr=1e-2, progress=False)
    context = RecordingContext(teacher, splits, config, Run(tmp_path, None, write_recipe=False), "euler", 2,
                               lambda conditioned: _net(3, conditioned))
    students = method.train(context)
    objective = context.objectives[-1]
    for student in students.values():
        assert torch.equal(_params(student.net), _params(objective.ema.net))
        assert not torch.equal(_params(student.net), _params(objective.model.net))
        assert student.clip == 5.0 and not any(p.requires_grad for p in student.parameters())


def test_progressive_teaches_each_round_with_the_last_rounds_ema(tmp_path):
    method = STEP_METHODS.build("progressive", start_steps=4, final_steps=1, ema_decay=0.9)
    splits = toy_dataset("8gaussians", 64, 16)
    config = TrainConfig(steps=4, batch_size=16, lr=1e-2, progress=False)
    context = RecordingContext(_denoiser(3).requires_grad_(False), splits, config,
                               Run(tmp_path, None, write_recipe=False), "ddim", 4, lambda c: _net(3, c))
    students = method.train(context)
    first, second = context.objectives
    assert torch.equal(_params(second.teacher.net), _params(first.ema.net))
    assert torch.equal(_params(students[2].net), _params(first.ema.net))


# --- no clamp on the training path ------------------------------------------------------------------------


def test_students_train_without_the_clamp_and_sample_with_it():
    teacher = _denoiser(3, clip=1.0)
    context = StepsContext(teacher, None, None, None, "ddim", 4, lambda c: _net(3, c))
    student = context.student()
    assert student.clip is None and context.for_sampling(copy.deepcopy(student)).clip == 1.0
    # a student whose x0 lies outside [-1, 1] still gets a gradient on every coordinate
    objective = ProgressiveObjective(student, teacher, 1, 0.999)
    with torch.no_grad():
        for p in student.net.out.parameters():
            p.mul_(50)
    x = torch.randn(64, 2)
    t = torch.ones(64)
    assert (student.split(x, t)[0].abs() > 1).any()
    objective({"x": x, "y": None})["loss"].backward()
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert student.net.out[-1].weight.grad.abs().min() > 0


# --- Heun -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_heun_takes_an_euler_last_step_and_counts_2n_minus_1(steps):
    recorder = Calls(_net(1))
    denoiser = Denoiser(recorder, build_process("flow"), "velocity")
    sampler = OdeGenerator(denoiser, "heun")
    sampler.sample(torch.randn(8, 2), None, steps)
    assert len(recorder.calls) == sampler.evaluations(steps) == 2 * steps - 1
    assert all(float(t.min()) > 0 for _, t in recorder.calls)  # never evaluated at the data end


def test_heun_leaves_no_noise_at_the_data_end():
    # data at a single point c: the exact velocity is (x − c)/t, every ODE path a straight line to c
    c = torch.tensor([0.5, -1.0])

    class Exact(nn.Module):
        def forward(self, x, t, y=None, d=None):
            return (x - c) / t.clamp(min=1e-8)[:, None]

    sample = OdeGenerator(Denoiser(Exact(), build_process("flow"), "velocity"), "heun").sample(
        torch.randn(256, 2), None, 4)
    assert sample.std(dim=0).max() < 1e-5 and torch.allclose(sample.mean(0), c, atol=1e-5)
