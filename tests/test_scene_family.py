"""The scene family (issue 28): conversion targets and losses, a short conversion, compaction from the
library, bad input refused before any work, and every recipe loading and running end to end at a tiny
budget through run, eval and export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from distill.cli import main
from distill.errors import ConfigError, DistillError
from distill.experiment import get_task, load_recipe, load_run_recipe
from distill.scenes import GaussianScene, NeuralField, RaySamples, VoxelGrid, orbit, read_representation
from distill.tasks.scene import compact, conversion_targets, convert, pointwise_losses
from distill.tasks.scene.objectives import ConversionObjective

RECIPES = sorted(Path(__file__).parents[1].glob("recipes/scene/*.yaml"))


def one_ray(points) -> RaySamples:
    """One ray along +x through ``points`` (K, 3), samples 0.1 apart."""
    points = torch.tensor(points, dtype=torch.float32)[None]
    return RaySamples(points, torch.tensor([[1.0, 0.0, 0.0]]), points[..., 0] + 3.0, torch.tensor([0.1]))


def blob_grid(resolution: int = 8) -> VoxelGrid:
    """A grid holding a dense ball whose grey level varies with height (a teacher with something to learn)."""
    grid = VoxelGrid(resolution, channels=1, samples=16)
    points = grid.lattice_points()
    with torch.no_grad():
        grid.density_logits.copy_(torch.where(points.norm(dim=-1) < 0.6, 4.0, -6.0))
        grid.colour_logits.copy_(3 * points[None, ..., 2])
    return grid


def test_a_conversion_target_at_a_teacher_sample_is_the_teachers_own_density_and_colour_there():
    grid = VoxelGrid(5, channels=1)
    with torch.no_grad():
        grid.density_logits.copy_(torch.randn(5, 5, 5, generator=torch.Generator().manual_seed(0)) * 3)
        grid.colour_logits.copy_(torch.randn(1, 5, 5, 5, generator=torch.Generator().manual_seed(1)))
    lattice = grid.lattice_points()
    rays = one_ray([lattice[1, 2, 3].tolist(), lattice[2, 2, 3].tolist(), lattice[3, 2, 3].tolist()])
    targets = conversion_targets(grid, rays, clip=(-50.0, 50.0))
    torch.testing.assert_close(targets.density[0], grid.density_logits[1:4, 2, 3].detach())
    torch.testing.assert_close(targets.values[0, :, 0], torch.sigmoid(grid.colour_logits[0, 1:4, 2, 3]).detach())
    clipped = conversion_targets(grid, rays, clip=(-0.5, 0.5)).density
    torch.testing.assert_close(clipped, grid.density_logits[1:4, 2, 3].detach().clamp(-0.5, 0.5)[None])
    # a teacher of Gaussians: at the centre of an isolated one, its density is -log(1 - o) / (s sqrt(2 pi))
    splat = GaussianScene.from_points(torch.tensor([[0.2, 0.1, -0.1]]), torch.tensor([[0.3]]), channels=1, scale=0.1,
                                      opacity=0.5)
    target = conversion_targets(splat, one_ray([[0.2, 0.1, -0.1]]), clip=(-50.0, 50.0))
    torch.testing.assert_close(F.softplus(target.density), torch.tensor([[math.log(2) / (0.1 * math.sqrt(2 * math.pi))]]))
    torch.testing.assert_close(target.values, torch.tensor([[[0.3]]]))


def test_pointwise_losses_vanish_for_a_copy_of_the_teacher_and_not_for_another_student():
    teacher = blob_grid()
    found = teacher.ray_samples(orbit(2, elevation=20.0), 8, jitter=True)
    rays = found.rays(torch.arange(0, 128, 3))
    targets = conversion_targets(teacher, rays)
    same = pointwise_losses(blob_grid(), rays, targets)
    assert all(float(value.detach()) < 1e-10 for value in same.values()), same
    other = pointwise_losses(VoxelGrid(8, channels=1), rays, targets)
    assert all(float(value.detach()) > 1e-3 for value in other.values()), other


@pytest.mark.parametrize("student", ["field", "gaussians"])
def test_a_short_conversion_lowers_the_loss(student):
    teacher = blob_grid()
    scene = (NeuralField(2, 16, 1, channels=1, samples=16, generator=torch.Generator().manual_seed(0))
             if student == "field" else GaussianScene.random(24, channels=1, generator=torch.Generator().manual_seed(0)))
    cameras = orbit(4, elevation=15.0)
    objective = ConversionObjective(teacher, scene, cameras, 8, samples=16, rays=256,
                                    render_weight=0.0 if student == "field" else 1.0,
                                    views=None if student == "field" else _teacher_views(teacher, cameras))

    def loss() -> float:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(5)
            return float(objective({"index": torch.arange(4)})["loss"])

    before = loss()
    result = convert(teacher, scene, steps=30, size=8, batch_size=2, lr=0.02, views=8, samples=16, rays=256)
    assert result.student is scene and len(result.losses) == 30
    assert loss() < 0.6 * before


def _teacher_views(teacher, cameras):
    from distill.tasks.scene.objectives import teacher_views

    return teacher_views(teacher, cameras, 8)


def test_compact_keeps_one_in_ratio_of_the_gaussians_and_trains_them_towards_the_teacher():
    teacher = GaussianScene.random(64, channels=1, generator=torch.Generator().manual_seed(0), opacity=0.5)
    result = compact(teacher, ratio=8, steps=10, size=8, batch_size=2, views=8, importance_views=4)
    assert len(result.student) == 8 and len(teacher) == 64
    assert result.losses[-1] < result.losses[0]
    with pytest.raises(ConfigError, match="keeps Gaussians"):
        compact(VoxelGrid(4, channels=1), ratio=2, steps=1, size=8, views=8)


def test_every_scene_recipe_loads():
    assert {p.stem for p in RECIPES} >= {"convert_voxels_to_field", "convert_voxels_to_gaussians", "compact_gaussians",
                                      "lift_features"}
    for path in RECIPES:
        recipe = load_recipe(path)
        assert recipe.task == "scene" and recipe.method.name in ("convert", "compact", "lift")


def _recipe(tmp_path: Path, **changes) -> Path:
    tree = {"name": "tiny", "task": "scene",
            "views": {"meshes": ["cow"], "count": 6, "size": 8, "held_out": 2, "surface_points": 64},
            "teacher": {"kind": "gaussians", "options": {"n": 32}, "train": {"steps": 2, "batch_size": 2}},
            "method": {"name": "compact", "options": {"ratio": 4, "importance_views": 4, "pseudo_views": 8}},
            "train": {"steps": 2, "batch_size": 2, "eval_every": 1}, **changes}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_bad_input_gets_one_clear_error_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "broken.obj").write_text("this is not a mesh\n")
    views = {"meshes": [str(tmp_path / "broken.obj")], "count": 6, "size": 8}
    assert main(["run", str(_recipe(tmp_path, views=views)), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and "broken.obj" in error and "mesh" in error
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "teacher").exists()

    missing = {"file": str(tmp_path / "nowhere.ply")}
    assert main(["run", str(_recipe(tmp_path, teacher=missing)), "--out", str(tmp_path / "run2")]) == 2
    assert "nowhere.ply" in capsys.readouterr().err and not (tmp_path / "cache").exists()

    with pytest.raises(ConfigError, match="unknown 3-D representation 'nerf'"):
        load_recipe(_recipe(tmp_path, teacher={"kind": "nerf"}))
    with pytest.raises(ConfigError, match=r"teacher.file 'scene.obj' is of no representation file type"):
        load_recipe(_recipe(tmp_path, teacher={"file": "scene.obj"}))
    with pytest.raises(ConfigError, match="compact needs a teacher of Gaussians"):
        load_recipe(_recipe(tmp_path, teacher={"kind": "voxels", "options": {"resolution": 8}}))
    with pytest.raises(ConfigError, match="convert needs a student section"):
        load_recipe(_recipe(tmp_path, method={"name": "convert"}))
    with pytest.raises(ConfigError, match="set by the run"):
        load_recipe(_recipe(tmp_path, method={"name": "convert"}, student={"kind": "field", "options": {"channels": 3}}))
    with pytest.raises(DistillError, match="does not exist"):
        read_representation(tmp_path / "nowhere.npz")


def test_a_tiny_compaction_runs_then_evaluates_and_exports_its_student(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(["run", str(_recipe(tmp_path)), "--out", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    rows = {row["model"]: row for row in results["rows"]}
    assert results["task"] == "scene" and len(rows) == 5
    assert [row["gaussians"] for row in results["rows"]] == [32, 8, 8, 8, 8]
    assert all(math.isfinite(row["psnr"]) for row in results["rows"])
    for name in ("report.md", "turntable.png", "curves.png", "student.ply", "teacher.ply"):
        assert (run_dir / name).is_file(), name
    assert main(["eval", str(run_dir)]) == 0
    [evaluated] = get_task("scene").evaluate(run_dir, load_run_recipe(run_dir)).rows
    student = results["rows"][-1]
    assert evaluated["psnr"] == pytest.approx(student["psnr"], abs=1e-4)
    assert evaluated["psnr_teacher"] == pytest.approx(student["psnr_teacher"], abs=1e-4)
    capsys.readouterr()
    assert main(["export", str(run_dir), "--out", str(tmp_path / "small.ply")]) == 0
    assert len(read_representation(tmp_path / "small.ply")) == 8
    assert main(["export", str(run_dir), "--format", "onnx"]) == 2
    assert "not a network" in capsys.readouterr().err


def test_a_tiny_conversion_into_a_field_writes_its_npz_and_the_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    path = _recipe(tmp_path, teacher={"kind": "voxels", "options": {"resolution": 8, "samples": 8},
                                      "train": {"steps": 2, "batch_size": 2}},
                   method={"name": "convert", "options": {"samples": 8, "rays": 32, "pseudo_views": 4}},
                   student={"kind": "field", "options": {"frequencies": 2, "width": 8, "depth": 1, "samples": 8}})
    for folder in ("run", "again"):  # the second run loads the cached teacher and repeats the first exactly
        assert main(["run", str(path), "--out", str(tmp_path / folder), "--no-progress"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [row["representation"] for row in results["rows"]] == ["VoxelGrid", "NeuralField", "NeuralField"]
    assert len(results["details"]["curves"]["converted"]) == 2 and results["details"]["baseline_rays"] == 32
    equal = results["details"]["equal_quality"]
    assert equal["psnr"] == min(results["details"]["curves"][k][-1]["psnr"] for k in ("baseline", "converted"))
    assert "At equal quality" in (tmp_path / "run" / "report.md").read_text()
    student, again = (read_representation(tmp_path / folder / "student.npz") for folder in ("run", "again"))
    assert isinstance(student, NeuralField)
    for mine, theirs in zip(student.parameters(), again.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    repeat = json.loads((tmp_path / "again" / "results.json").read_text())
    assert repeat["details"]["teacher"]["cached"] and [r["psnr"] for r in repeat["rows"]] == [r["psnr"] for r in results["rows"]]
