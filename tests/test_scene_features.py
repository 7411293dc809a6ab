"""Feature fields (issue 28, item 3; Feature 3DGS): a rendered feature field is the hand composite of its
Gaussians' features, part labels come from the mesh's own faces, a feature tap that does not exist is
refused before any work, the library's lift trains, and the lift recipe runs end to end at a tiny budget."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from distill.cli import main
from distill.errors import ConfigError, DistillError
from distill.experiment import get_task, load_recipe, load_run_recipe
from distill.scenes import GaussianScene, ellipsoid_mesh, normalise_mesh, orbit, read_representation, render_mesh
from distill.scenes.parts import face_parts, part_maps
from distill.tasks.scene import FeatureField, lift
from distill.tasks.scene.metrics import feature_cosine, mean_iou
from distill.tasks.scene.segmenter import PartSegmenter


def two_gaussians() -> GaussianScene:
    """Two overlapping Gaussians, one 0.3 nearer the first camera of ``orbit(1)`` than the other and a little aside."""
    towards = orbit(1, elevation=0.0).positions()[0]
    points = torch.stack([torch.zeros(3), 0.3 * towards / towards.norm() + torch.tensor([0.0, 0.05, 0.02])])
    return GaussianScene.from_points(points, channels=1, scale=0.25, opacity=0.6)


def test_a_rendered_feature_field_equals_a_hand_composite_of_its_gaussians():
    geometry, cameras, size = two_gaussians(), orbit(1, elevation=0.0), 9
    features = torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.5, 0.25, 2.0, -0.5]])
    field = FeatureField(geometry, 4)
    background = torch.tensor([0.5, -1.0, 2.0, 0.25])
    with torch.no_grad():
        field.scene.colour_logits.copy_(features)
        field.background.copy_(background)
        rendered = field.render(cameras, size)[0]                                  # (4, H, W)
        # each Gaussian alone: its opacity at a pixel is its alpha there; the nearer one composites first
        alphas = [geometry.subset(torch.tensor([i])).render_depth(cameras, size)[1][0] for i in range(2)]
        depths = cameras.world_to_camera(geometry.positions)[0, :, 2]
        near, far = (0, 1) if depths[0] < depths[1] else (1, 0)
        hand = (alphas[near] * features[near][:, None, None]
                + (1 - alphas[near]) * alphas[far] * features[far][:, None, None]
                + (1 - alphas[near]) * (1 - alphas[far]) * background[:, None, None])
    assert float(alphas[0].amax()) > 0.3 and float(alphas[1].amax()) > 0.3       # both are seen, and overlap
    assert float((alphas[0] * alphas[1]).amax()) > 0.05
    torch.testing.assert_close(rendered, hand, rtol=1e-5, atol=1e-6)
    reduced = FeatureField(geometry, 2, decoded=4)                                  # the C/r variant: a 1×1 decoder
    with torch.no_grad():
        reduced.scene.colour_logits.copy_(features[:, :2])
        reduced.background.copy_(background[:2])
        weight, bias = reduced.decoder.weight[:, :, 0, 0], reduced.decoder.bias
        expected = torch.einsum("oc,chw->ohw", weight, hand[:2]) + bias[:, None, None]
        torch.testing.assert_close(reduced.render(cameras, size)[0], expected, rtol=1e-5, atol=1e-5)
    assert [p.requires_grad for p in field.scene.parameters()].count(True) == 1 and field.parameter_count() == 2 * 4 + 4


def test_parts_come_from_the_mesh_faces_and_map_onto_its_renders():
    mesh = normalise_mesh(ellipsoid_mesh(radii=(0.5, 0.5, 1.0)))
    parts = face_parts(mesh, 2)
    heights = torch.tensor(mesh.triangles_center[:, 2].copy())
    assert set(parts.tolist()) == {1, 2} and heights[parts == 1].max() < heights[parts == 2].min() + 0.2
    cameras = orbit(2, elevation=10.0)
    maps = part_maps(mesh, parts, cameras, 12)
    assert torch.equal(maps > 0, render_mesh(mesh, cameras, 12, background=0.0)[:, 0] > 0)
    assert set(maps.unique().tolist()) == {0, 1, 2}
    assert mean_iou(maps, maps, 3) == 1.0 and mean_iou(torch.zeros_like(maps), maps, 3) == 0.0
    values = torch.randn(2, 3, 12, 12)
    assert feature_cosine(values, 2 * values, maps > 0) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="one label per face"):
        part_maps(mesh, parts[:-1], cameras, 12)


def test_the_library_lift_fits_a_networks_features_onto_gaussians():
    teacher = GaussianScene.random(24, channels=1, generator=torch.Generator().manual_seed(0), opacity=0.5)
    cameras = orbit(4, elevation=15.0)
    network = PartSegmenter(3, width=4).requires_grad_(False)
    images = teacher.render(cameras, 8).detach() * 2 - 1
    result = lift(teacher, network, images, cameras, tap="features", reduce=2, steps=8, batch_size=2)
    assert result.losses[-1] < result.losses[0]
    assert result.student.render(cameras, 8).shape == (4, 4, 8, 8) and result.student.scene.channels == 2
    with pytest.raises(DistillError, match="no module 'head.nope'"):
        lift(teacher, network, images, cameras, tap="head.nope", steps=1)


def _recipe(tmp_path, **method) -> str:
    tree = {"name": "tiny-lift", "task": "scene",
            "views": {"meshes": ["cow"], "count": 6, "size": 8, "held_out": 2, "surface_points": 64},
            "teacher": {"kind": "gaussians", "options": {"n": 32}, "train": {"steps": 2, "batch_size": 2}},
            "method": {"name": "lift", "options": {"parts": 3, "segmenter": {"width": 4, "views": 4, "train": {
                "steps": 2, "batch_size": 2}}, **method}},
            "train": {"steps": 2, "batch_size": 2}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_a_feature_tap_that_does_not_exist_gets_one_clear_error_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    assert main(["run", _recipe(tmp_path, tap="head.nope"), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and "no module 'head.nope'" in error and "'head'" in error
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "teacher").exists()
    with pytest.raises(ConfigError, match="method lift needs a teacher of Gaussians"):
        load_recipe({**yaml.safe_load(open(_recipe(tmp_path))), "teacher": {"kind": "voxels"}})


def test_the_lift_recipe_runs_end_to_end_and_writes_its_report_and_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(["run", _recipe(tmp_path), "--out", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    teacher, on_mesh, on_teacher, full, reduced = results["rows"]
    assert [row["representation"] for row in results["rows"]] == ["GaussianScene", "PartSegmenter", "PartSegmenter",
                                                                 "FeatureField", "FeatureField"]
    assert (full["channels"], reduced["channels"], full["gaussians"]) == (4, 1, 32)
    for row in (on_mesh, on_teacher, full, reduced):
        assert 0.0 <= row["miou"] <= 1.0 and row["render_ms"] > 0
    assert on_teacher["render_ms"] > on_mesh["render_ms"]  # the teacher's render counts in its time per view
    assert all(-1.0 <= row["cosine"] <= 1.0 and math.isfinite(row["cosine"]) for row in (on_teacher, full, reduced))
    assert results["details"]["tap"] == "output" and results["details"]["segmenter"]["classes"] == 4
    assert "Feature-field claims" in (run_dir / "report.md").read_text()
    student = read_representation(run_dir / "student.ply")
    assert student.features and student.channels == 4 and len(student) == 32
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 2
    assert "feature field" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="results.json"):
        get_task("scene").evaluate(run_dir, load_run_recipe(run_dir))


def test_the_readme_lift_snippet_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "lift(scene" in block)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (4, 5, 16, 16) and namespace["fields"].losses[-1] < namespace["fields"].losses[0]
    assert read_representation(tmp_path / "features.ply").channels == 1
