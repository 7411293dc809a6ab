"""Improved consistency (iCT, Song & Dhariwal, ICLR 2024): the level times, the curriculum, the
lognormal pick, the 1/Δσ weights, the two targets, the stop-gradient, refusals and a recipe run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import build_denoiser
from distill.diffusion.process import CosineDiffusion, FlowProcess
from distill.errors import ConfigError
from distill.experiment import Run, get_task, load_recipe
from distill.tasks.steps.methods import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.consistency import consistency_distance, consistency_function
from distill.tasks.steps.methods.ict import ImprovedConsistency, ImprovedConsistencyObjective, times_of_ratios
from distill.tasks.steps.metrics import counting_evaluations
from distill.tasks.steps.run import STUDENTS_FILE

RECIPE = Path(__file__).parents[1] / "recipes/steps/ict.yaml"
PROCESSES = [FlowProcess(), CosineDiffusion()]
SCALE = 10_000.0


def _teacher(process=None) -> Denoiser:
    torch.manual_seed(0)
    net = build_denoiser("mlp", (2,), 0, hidden=16, depth=1)
    with torch.no_grad():  # weights far from initialisation, so the two branches differ
        for p in net.parameters():
            p.normal_(0, 0.3)
    return Denoiser(net, process or FlowProcess(), "velocity", 0, 1.0).eval().requires_grad_(False)


def _objective(target: str = "teacher", solver: str = "heun", total: int = 1000, distance: str = "huber",
               teacher: Denoiser | None = None) -> ImprovedConsistencyObjective:
    method = ImprovedConsistency(target=target, distance=distance)
    teacher = teacher or _teacher()
    student = StepsContext(teacher, None, None, None, solver, 4, None).student()
    return ImprovedConsistencyObjective(student, teacher if target == "teacher" else None, method.curriculum,
                                        total, solver, distance, SCALE, 0.999)


def _batch(n: int = 64) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"x": torch.randn(n, 2, generator=generator), "y": None}


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_times_of_ratios_inverts_the_process(process):
    curriculum = ImprovedConsistency().curriculum
    sigmas = curriculum.sigmas(1281)
    times = times_of_ratios(process, sigmas)
    alpha, sigma, _, _ = process.coefficients(times)
    assert torch.allclose(sigma / alpha, sigmas, rtol=1e-4, atol=0)
    assert bool((times.diff() > 0).all()) and 0 < float(times[0]) and float(times[-1]) < 1
    grid_times, _, _ = curriculum.grid(process, 1281)
    assert float(grid_times[-1]) == 1.0  # the top level is pure noise, where sampling starts
    assert torch.equal(grid_times[:-1], times[:-1])
    beyond = times_of_ratios(process, torch.tensor([0.0, 1e12]))  # outside the range: clamped to its ends
    assert float(beyond[0]) < 1e-9 and float(beyond[1]) > 1 - 1e-9


def test_curriculum_doubles_every_k_prime_steps_up_to_s1():
    curriculum = ImprovedConsistency(s0=10, s1=1280).curriculum
    total = 1000
    k_prime = math.floor(total / (math.log2(1280 // 10) + 1))
    assert k_prime == 125
    expected = {0: 11, 124: 11, 125: 21, 249: 21, 250: 41, 375: 81, 500: 161, 625: 321, 750: 641, 874: 641,
                875: 1281, 999: 1281, 10**6: 1281}
    assert {k: curriculum.levels(k, total) for k in expected} == expected
    assert ImprovedConsistency(s0=3, s1=3).curriculum.levels(0, 5) == 4  # a fixed grid
    assert ImprovedConsistency(s0=4, s1=8).curriculum.levels(1, 1) == 9  # K < doublings: K' = 1


def test_objective_follows_the_curriculum_and_caches_its_grid():
    objective = _objective(target="data")
    assert float(objective(_batch())["intervals"]) == 10
    first = objective.grid()
    objective.after_optimizer_step(124)
    assert objective.grid() is first  # N unchanged: no rebuild
    objective.after_optimizer_step(125)
    assert float(objective(_batch())["intervals"]) == 20 and len(objective.grid()[1]) == 21
    assert int(objective.state_dict()["steps_done"]) == 125  # the step resumes with a checkpoint


def test_lognormal_interval_probabilities():
    curriculum = ImprovedConsistency().curriculum
    sigmas = curriculum.sigmas(1281)
    p = curriculum.probabilities(sigmas)
    assert len(p) == 1280 and bool((p > 0).all()) and math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    normal = torch.distributions.Normal(torch.tensor(-1.1, dtype=torch.float64), 2.0)
    mass = normal.cdf(sigmas.log()).diff()
    assert torch.allclose(p, mass / mass.sum())  # the Gaussian mass of each interval in log σ
    density = p / sigmas.log().diff()  # per unit log σ: peaks at the interval holding P_mean
    peak = int(density.argmax())
    assert float(sigmas[peak].log()) <= -1.1 <= float(sigmas[peak + 1].log())


@pytest.mark.parametrize("target", ["teacher", "data"])
def test_row_loss_is_the_weighted_distance(target):
    objective = _objective(target=target)
    batch = _batch(1)
    torch.manual_seed(5)
    loss = objective(batch)["loss"]
    torch.manual_seed(5)  # the objective's draws, in its order: the interval, then ε
    _, times, _, probabilities = objective.grid()
    i = int(torch.multinomial(probabilities, 1, replacement=True))
    eps = torch.randn(1, 2)
    root = lambda k: 0.002 ** (1 / 7) + k / 10 * (80 ** (1 / 7) - 0.002 ** (1 / 7))  # noqa: E731
    weight = 1 / (root(i + 1) ** 7 - root(i) ** 7)  # λ = 1/(σ_{i+1} − σ_i), by hand
    x, model = batch["x"], objective.model
    t, s = times[i + 1 : i + 2], times[i : i + 1]
    x_t = model.process.noise(x, eps, t)
    if target == "data":
        x_s = model.process.noise(x, eps, s)
    else:  # one Heun step of the teacher
        velocity = objective.teacher(x_t, t, None)
        euler = x_t + (s - t) * velocity
        x_s = x_t + (s - t) * (velocity + objective.teacher(euler, s, None)) / 2
    with torch.no_grad():
        expected = weight * consistency_distance(consistency_function(model, x_t, t, None, SCALE),
                                                 consistency_function(model, x_s, s, None, SCALE), "huber")
    assert float(expected) > 0
    assert torch.allclose(loss, expected, rtol=1e-4), (loss, expected)


@pytest.mark.parametrize("target, solver, calls", [("data", "heun", 0), ("teacher", "heun", 2),
                                                   ("teacher", "euler", 1)])
def test_only_the_teacher_target_evaluates_the_teacher(target, solver, calls):
    teacher = _teacher()
    objective = _objective(target=target, solver=solver, teacher=teacher)
    assert (objective.teacher is None) == (target == "data")
    with counting_evaluations(teacher.net) as rows:
        objective(_batch(32))
    assert rows[0] == calls * 32


def test_gradient_flows_only_through_the_online_branch():
    objective = _objective(target="data", distance="l2")
    model = objective.model
    batch = _batch(16)
    torch.manual_seed(3)
    objective(batch)["loss"].backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    torch.manual_seed(3)
    _, times, weights, probabilities = objective.grid()
    i = torch.multinomial(probabilities, 16, replacement=True)
    eps = torch.randn(16, 2)
    x, (t, s) = batch["x"], (times[i + 1], times[i])
    pred = consistency_function(model, model.process.noise(x, eps, t), t, None, SCALE)
    target = consistency_function(model, model.process.noise(x, eps, s), s, None, SCALE)

    def grads(loss):
        model.zero_grad()
        loss.backward(retain_graph=True)
        return [p.grad.clone() for p in model.parameters()]

    stopped = grads((weights[i] * consistency_distance(pred, target.detach(), "l2")).mean())
    both = grads((weights[i] * consistency_distance(pred, target, "l2")).mean())
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(got, stopped))
    assert not all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(got, both))  # not vacuous


def test_toy_recipe_runs_and_saves_its_students(tmp_path):
    overrides = ["teacher.train.steps=20", "teacher.train.batch_size=64", "teacher.steps=4",
                 "teacher.options.hidden=16", "teacher.options.depth=1", "data.options.n_train=1000",
                 "data.options.n_test=300", "train.steps=30", "train.batch_size=64", "evaluate.samples=200",
                 "evaluate.teacher_steps=[1]", "train.progress=false", "teacher.train.progress=false"]
    recipe = load_recipe(RECIPE, overrides)
    assert recipe.method.name == "ict" and "ict" in STEP_METHODS.names()
    task = get_task("steps")
    table = task.run(recipe, Run(tmp_path, recipe))
    students = [r for r in table.rows if r["model"] == "student (ict)"]
    assert [r["steps"] for r in students] == [1, 2, 4] and [r["nfe"] for r in students] == [1, 2, 4]
    assert (tmp_path / STUDENTS_FILE).stat().st_size > 0
    log = (tmp_path / "ict" / "metrics.csv").read_text().splitlines()
    header, last = log[0].split(","), log[-1].split(",")
    assert float(last[header.index("train_intervals")]) >= 10  # the curriculum is in the log
    restored = task.evaluate(tmp_path, recipe)  # the saved students reload into fresh networks
    assert [r["steps"] for r in restored.rows if r["model"] == "student (ict)"] == [1, 2, 4]


@pytest.mark.parametrize("options, match", [
    ({"s0": 0}, "s0"), ({"s0": 20, "s1": 10}, "s1"), ({"s1": 12.5}, "s1"), ({"s0": True}, "s0"),
    ({"p_std": 0.0}, "p_std"), ({"p_std": "2"}, "p_std"), ({"p_mean": 9.0}, "p_mean"),
    ({"sigma_min": 0.0}, "sigma_min"), ({"sigma_min": 90.0}, "sigma_max"), ({"rho": -1.0}, "rho"),
    ({"distance": "l1"}, "distance"), ({"target": "ema"}, "target"), ({"solver": "rk4"}, "solver"),
    ({"ema_decay": 1.0}, "ema_decay"), ({"time_scale": 0.0}, "time_scale"),
])
def test_refuses_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        ImprovedConsistency(**options)


def test_recipe_refuses_bad_options_when_it_loads():
    with pytest.raises(ConfigError, match="target"):
        load_recipe(RECIPE, ["method.options.target=ema"])
