"""Point-cloud generation in few steps (PSF): the Chamfer distance and its gradient, the point-set metrics
on configurations whose answer is known, the set denoiser's permutation equivariance, reflow's Chamfer
distillation loss, the user's point sets (bad ones refused before any work) and a tiny run from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from distill.data import load_dataset
from distill.data.generative import is_point_sets, load_generative_data
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import PointSetNet, build_denoiser
from distill.diffusion.process import build_process
from distill.errors import ConfigError, DistillError
from distill.experiment import Run, get_task, load_recipe
from distill.metrics.excess import ChamferExcess
from distill.metrics.point_sets import chamfer, pairwise_chamfer, point_set_metrics
from distill.tasks.steps.methods.reflow import Reflow, ReflowObjective

RECIPE = Path(__file__).parents[1] / "recipes" / "steps" / "points_psf.yaml"


def clouds(count: int, points: int, seed: int, radius: float = 1.0) -> np.ndarray:
    """``count`` point sets of ``points`` points on spheres of radius ``radius``·(1 or 2) (two modes)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, points, 3))
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    return (x * radius * rng.integers(1, 3, size=(count, 1, 1))).astype(np.float32)


def test_chamfer_by_hand_and_its_gradient_against_finite_differences():
    a = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.1, 0.0]]])
    # a→b: 0 and 0.01; b→a: 0, min(4, 5) = 4, 0.01
    assert chamfer(a, b).item() == pytest.approx(0.01 / 2 + 4.01 / 3)
    assert torch.equal(chamfer(b, a), chamfer(a, b))
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(chamfer, (x, y), eps=1e-6, atol=1e-6)
    with pytest.raises(DistillError, match="same batch size"):
        chamfer(torch.zeros(2, 4, 3), torch.zeros(3, 4, 3))


def test_chamfer_ignores_the_order_of_the_points_and_pairwise_matches_it():
    torch.manual_seed(1)
    x, y = torch.randn(3, 6, 3), torch.randn(4, 5, 3)
    assert torch.allclose(chamfer(x, x[:, torch.randperm(6)]), torch.zeros(3))
    table = pairwise_chamfer(x, y)
    assert table.shape == (3, 4) and table.dtype == torch.float64
    by_pairs = chamfer(x.repeat_interleave(4, 0), y.repeat(3, 1, 1)).view(3, 4)
    assert torch.allclose(table.float(), by_pairs, rtol=1e-4)


def test_metrics_of_a_copy_and_of_a_distant_draw():
    real = torch.from_numpy(clouds(12, 16, seed=0))
    among_real = pairwise_chamfer(real, real)
    # a copy of the real sets: MMD 0, every real set covered, and 1-NNA 0 (each set's nearest is its twin)
    copy = point_set_metrics(among_real, among_real, among_real)
    assert copy == pytest.approx({"mmd_cd": 0.0, "cov": 1.0, "nna": 0.0}, abs=1e-6)
    # every generated set far away: the classifier is always right, one real set is everyone's nearest
    far = real + 10.0
    far_metrics = point_set_metrics(pairwise_chamfer(far, real), pairwise_chamfer(far, far), among_real)
    assert far_metrics["nna"] == 1.0 and far_metrics["cov"] == pytest.approx(1 / 12)
    assert far_metrics["mmd_cd"] == pytest.approx(pairwise_chamfer(far, real).amin(0).mean().item())


def test_the_excess_of_a_draw_like_the_reference_is_zero_and_grows_with_distance():
    real, reference = torch.from_numpy(clouds(20, 16, seed=0)), torch.from_numpy(clouds(20, 16, seed=1))
    excess = ChamferExcess(pairwise_chamfer(real, real), pairwise_chamfer(reference, real), resamples=50)
    floor = pairwise_chamfer(reference, real).amin(0).mean().item()
    assert excess.floor == pytest.approx(floor) and excess.floor_spread > 0
    same = excess(pairwise_chamfer(reference, real))
    assert same.value == 0.0 and same.low == 0.0
    shifted = reference + 0.3
    to_real = pairwise_chamfer(shifted, real)
    result = excess(to_real)
    assert result.value == pytest.approx(math.sqrt(to_real.amin(0).mean().item() - floor))
    assert result.low <= result.value <= result.high


def test_the_set_denoiser_is_permutation_equivariant_and_refuses_other_shapes():
    torch.manual_seed(0)
    net = build_denoiser("pointnet", (20, 3), num_classes=3, hidden=16, depth=2)
    assert isinstance(net, PointSetNet)
    with torch.no_grad():
        for p in net.parameters():  # far from initialisation: every layer matters
            p.normal_(0, 0.3)
    x, t, y = torch.randn(4, 20, 3), torch.rand(4), torch.tensor([0, 1, 2, -1])
    order = torch.randperm(20)
    out = net(x, t, y)
    assert out.shape == x.shape
    assert torch.allclose(net(x[:, order], t, y), out[:, order], atol=1e-5)
    assert not torch.allclose(net(x, t.flip(0), y), out)  # and time-conditioned
    moved = x.clone()
    moved[:, 0] += 1.0  # one point moves: the others see it through the global feature (where it is a max)
    assert (net(moved, t, y)[:, 1:] - out[:, 1:]).abs().amax() > 1e-5
    with pytest.raises(DistillError, match=r"point sets \(N, 3\)"):
        build_denoiser("pointnet", (8,))


def test_reflow_chamfer_loss_ignores_the_order_of_the_teachers_points_and_mse_does_not():
    torch.manual_seed(0)
    student = Denoiser(build_denoiser("pointnet", (10, 3), hidden=8, depth=1), build_process("flow"), "velocity")
    sample, noise = torch.randn(4, 10, 3), torch.randn(4, 10, 3)
    shuffled = sample[:, torch.randperm(10)]
    losses = {}
    for loss in ("mse", "chamfer"):
        objective = ReflowObjective(student, 0.0, steps=1, loss=loss)
        losses[loss] = [objective({"sample": s, "noise": noise, "y": None})["loss"].item() for s in (sample, shuffled)]
    assert losses["chamfer"][0] == pytest.approx(losses["chamfer"][1], rel=1e-6)
    assert losses["mse"][0] != pytest.approx(losses["mse"][1], rel=1e-3)
    # the one-step prediction is noise − velocity: a student that outputs noise − sample scores 0
    exact = ReflowObjective(Denoiser(_Constant(noise - sample), build_process("flow"), "velocity"), 0.0, 1, "chamfer")
    assert exact({"sample": shuffled, "noise": noise, "y": None})["loss"].item() == pytest.approx(0.0, abs=1e-6)


class _Constant(torch.nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(value.clone())

    def forward(self, x, t, y=None, d=None):
        return self.value


def test_reflow_options_for_the_chamfer_loss_are_checked():
    with pytest.raises(ConfigError, match="distill_loss must be one of"):
        Reflow(distill_loss="emd")
    with pytest.raises(ConfigError, match="loss must be one of"):
        ReflowObjective(Denoiser(_Constant(torch.zeros(1)), build_process("flow"), "velocity"), 0.0, 1, "emd")
    with pytest.raises(ConfigError, match="set distill_steps"):
        Reflow(distill_steps=None, distill_loss="chamfer")
    with pytest.raises(ConfigError, match=r"point sets \(N, 3\)"):
        Reflow(distill_loss="chamfer").check_data((2,))
    Reflow(distill_loss="chamfer").check_data((16, 3))


@pytest.fixture
def point_files(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    np.save("train.npy", clouds(120, 16, seed=0, radius=0.5))
    np.savez("test.npz", x=clouds(80, 16, seed=1, radius=0.5))
    return tmp_path


def test_point_sets_load_from_the_users_files_as_given(point_files):
    splits = load_generative_data("point_sets", {"train": "train.npy", "test": "test.npz"})
    assert is_point_sets("point_sets") and is_point_sets("mesh_points") and not is_point_sets("digits")
    assert splits.input_shape == (16, 3) and splits.num_classes == 0 and len(splits.train) == 120
    assert torch.equal(splits.train.x, torch.from_numpy(clouds(120, 16, seed=0, radius=0.5)))  # not rescaled


@pytest.mark.parametrize("bad, message", [
    (lambda x: np.where(np.arange(16)[None, :, None] == 3, np.nan, x).astype(np.float32), "NaN"),
    (lambda x: x[:, :, :2].copy(), r"\(S, N, 3\)"),
])
def test_a_bad_point_set_is_refused_before_any_work(point_files, bad, message):
    np.save("train.npy", bad(clouds(120, 16, seed=0)))
    np.savez("test.npz", x=bad(clouds(80, 16, seed=1)))
    recipe = load_recipe(RECIPE, ["data.name=point_sets", "data.options={train: train.npy, test: test.npz}"])
    with pytest.raises(DistillError, match=message):
        get_task("steps").run(recipe, Run(point_files / "run", recipe))
    assert not (point_files / "run" / "teacher").exists()
    with pytest.raises(DistillError, match=message):
        load_dataset("point_sets", train="train.npy", test="test.npz")


def test_the_recipe_runs_on_the_users_point_sets(point_files):
    """With the MSE distillation loss (the recipe's own, Chamfer, runs in test_steps_recipes)."""
    for loss in ("mse",):
        recipe = load_recipe(RECIPE, [
            "data.name=point_sets", "data.options={train: train.npy, test: test.npz}", "teacher.options.hidden=8",
            "teacher.options.depth=1", "teacher.steps=2", "teacher.train.steps=10", "teacher.train.batch_size=16",
            "teacher.train.progress=false", "train.steps=4", "train.batch_size=16", "train.progress=false",
            "method.options.pairs=64", f"method.options.distill_loss={loss}", "evaluate.samples=40",
            "evaluate.teacher_steps=[1]", "evaluate.bootstrap=20"])
        get_task("steps").run(recipe, Run(point_files / loss, recipe))
        results = json.loads((point_files / loss / "results.json").read_text())
        floor, *rows = results["rows"]
        assert [(r["model"], r["steps"]) for r in rows] == [("teacher (heun)", 1), ("teacher (heun)", 2),
                                                             ("student (reflow)", 1), ("student (reflow)", 2),
                                                             ("student (reflow)", 4)]
        assert results["details"]["scored_samples"] == 40
        assert 0.0 < floor["mmd_cd"] and 0.0 <= floor["cov"] <= 1.0 and 0.0 <= floor["nna"] <= 1.0
        for row in rows:
            assert all(math.isfinite(row[k]) for k in ("mmd_cd", "cov", "nna", "excess")), row
            assert row["mmd_cd"] > floor["mmd_cd"]  # ten training steps: far from the data
        assert (point_files / loss / "reflow_distill_1").is_dir()
        written = sorted(p.name for p in (point_files / loss / "clouds").iterdir())
        assert written == sorted(["real.ply", "teacher_heun_1step.ply", "teacher_heun_2step.ply",
                                 "student_reflow_1step.ply", "student_reflow_2step.ply", "student_reflow_4step.ply"])
        viewed = trimesh.load(point_files / loss / "clouds" / "real.ply")
        assert isinstance(viewed, trimesh.PointCloud) and viewed.vertices.shape == (16, 3)
        assert any(np.allclose(viewed.vertices, held_out) for held_out in clouds(80, 16, seed=1, radius=0.5))
        # `distill eval` restores the saved students and scores them as the run did
        rescored = get_task("steps").evaluate(point_files / loss, recipe).rows[1:]
        assert [(r["steps"], r["mmd_cd"]) for r in rescored] == [(r["steps"], r["mmd_cd"]) for r in rows[2:]]
