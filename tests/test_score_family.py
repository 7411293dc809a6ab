"""The score family from a recipe: validation before work, a points run and a 3-D run end to end, the
view-conditioned exact prior and the scene objectives."""

from __future__ import annotations

import json

import pytest
import torch

from distill.diffusion import build_process
from distill.errors import ConfigError
from distill.experiment.recipe import load_recipe
from distill.experiment.runner import Run
from distill.experiment.tasks import get_task
from distill.scenes import GaussianScene, ReconstructionObjective, ViewSet, ellipsoid_mesh, orbit, pose_vector
from distill.tasks.score.objectives import SceneObjective
from distill.tasks.score.view_prior import ViewConditionedExactDenoiser, view_directions

POINTS = {"name": "t", "task": "score", "data": {"name": "8gaussians", "options": {"n_train": 2000, "n_test": 500}},
          "prior": {"model": "mlp", "options": {"hidden": 32, "depth": 1}, "steps": 4,
                    "train": {"steps": 30, "batch_size": 128}},
          "guidance": {"name": "sds"}, "object": {"kind": "points", "count": 64},
          "train": {"steps": 10, "batch_size": 32, "lr": 0.01}}


def recipe(base: dict, **sections) -> dict:
    return {**base, **sections}


def test_a_points_recipe_refuses_views_and_a_scene_recipe_refuses_data():
    with pytest.raises(ConfigError, match="no 'views' section"):
        load_recipe(recipe(POINTS, views={"meshes": ["cow"]}))
    with pytest.raises(ConfigError, match="give a 'views' section"):
        load_recipe(recipe(POINTS, object={"kind": "gaussians"}))


def test_vsd_under_the_exact_prior_and_unknown_groups_are_refused_before_training():
    with pytest.raises(ConfigError, match="exact prior has none"):
        load_recipe(recipe(POINTS, guidance={"name": "vsd"}, prior={"kind": "exact"}))
    with pytest.raises(ConfigError, match=r"train.groups names \['fake'\]"):
        load_recipe(recipe(POINTS, train={"steps": 5, "groups": {"fake": {"lr": 1e-3}}}))
    with pytest.raises(ConfigError, match="guidance"):
        load_recipe(recipe(POINTS, guidance={"name": "sdss"}))


def test_a_points_run_scores_the_particles_beside_the_floor_initial_state_and_prior(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    loaded = load_recipe(POINTS)
    table = get_task("score").run(loaded, Run(tmp_path / "run", loaded))
    models = [row["model"] for row in table.rows]
    assert models[0].startswith("real data") and models[1] == "initial state" and models[-1] == "sds"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "score" and {"swd", "mode_distance", "modes_covered"} <= set(results["rows"][-1])
    assert (tmp_path / "run" / "particles.npz").exists() and (tmp_path / "run" / "particles.png").exists()


def test_the_view_exact_prior_returns_the_render_of_the_nearest_camera_at_low_noise():
    cameras = orbit(4, elevation=10.0)
    images = torch.stack([torch.full((1, 4, 4), float(k) / 4) for k in range(4)])
    prior = ViewConditionedExactDenoiser(images, pose_vector(cameras), build_process("flow"), kappa_degrees=5.0)
    # a query near view 2's camera but whose pixels sit halfway between renders 1 and 2: the camera decides
    query = orbit(4, elevation=12.0)[2]
    x = torch.full((1, 1, 4, 4), 0.375)
    x0, _ = prior.split(x, torch.tensor([0.3]), pose_vector(query))
    assert torch.allclose(x0, images[2:3], atol=1e-3)
    # even pixels identical to the opposite camera's render get this camera's render: the kernel is cut
    x0, _ = prior.split(images[0:1].clone(), torch.tensor([0.05]), pose_vector(query))
    assert torch.allclose(x0, images[2:3], atol=1e-3)
    assert torch.allclose(view_directions(pose_vector(cameras)).norm(dim=1), torch.ones(4))


def test_the_view_exact_prior_refuses_class_labels():
    cameras = orbit(2)
    prior = ViewConditionedExactDenoiser(torch.zeros(2, 1, 4, 4), pose_vector(cameras), build_process("flow"))
    with pytest.raises(ConfigError, match="pose vectors"):
        prior.split(torch.zeros(2, 1, 4, 4), torch.full((2,), 0.5), torch.tensor([0, 1]))


def _tiny_views(size: int = 8) -> ViewSet:
    from distill.scenes import render_mesh

    cameras = orbit(6, elevation=15.0)
    return ViewSet(2 * render_mesh(ellipsoid_mesh(), cameras, size) - 1, cameras, torch.zeros(6, dtype=torch.long))


def test_reconstruction_lowers_its_photometric_loss():
    torch.manual_seed(0)
    views = _tiny_views()
    scene = GaussianScene.random(24, 0.5, channels=1, generator=torch.Generator().manual_seed(0))
    objective = ReconstructionObjective(scene, views, 8)
    batch = {"index": torch.arange(6)}
    optimizer = torch.optim.Adam(scene.parameters(), lr=0.03)
    first = float(objective(batch)["loss"].detach())
    for _ in range(40):
        loss = objective(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(objective(batch)["loss"].detach()) < 0.7 * first


def test_sds_under_the_exact_view_prior_moves_the_renders_towards_the_views():
    torch.manual_seed(0)
    views = _tiny_views()
    prior = ViewConditionedExactDenoiser(views.images, views.poses, build_process("flow"), kappa_degrees=10.0)
    from distill.tasks.score.methods import GUIDANCES

    scene = GaussianScene.random(24, 0.5, channels=1, generator=torch.Generator().manual_seed(0))
    objective = SceneObjective(GUIDANCES.build("sds"), prior, scene, views.cameras, 8, total_steps=60)
    error = ReconstructionObjective(scene, views, 8)
    batch = {"index": torch.arange(6)}
    first = float(error(batch)["loss"].detach())
    optimizer = torch.optim.Adam(scene.parameters(), lr=0.03)
    for step in range(60):
        loss = objective(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_optimizer_step(step + 1)
    assert float(error(batch)["loss"].detach()) < 0.8 * first


def test_a_scene_run_writes_the_table_the_ply_and_the_turntable(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    mesh_file = tmp_path / "blob.off"
    ellipsoid_mesh().export(mesh_file)
    loaded = load_recipe({"name": "s", "task": "score",
                          "views": {"meshes": [str(mesh_file)], "count": 6, "size": 8, "held_out": 3,
                                    "surface_points": 256},
                          "prior": {"kind": "exact"}, "guidance": {"name": "sds"},
                          "object": {"kind": "gaussians", "count": 12},
                          "train": {"steps": 3, "batch_size": 2, "lr": 0.01}})
    table = get_task("score").run(loaded, Run(tmp_path / "run", loaded))
    assert [row["model"] for row in table.rows] == ["initial state", "reconstruction (prior's training views)", "sds"]
    assert all(row["object"] == "blob" and row["chamfer"] > 0 for row in table.rows)
    for name in ("scene.ply", "turntable.png", "report.md", "results.json"):
        assert (tmp_path / "run" / name).exists()


def test_the_class_conditional_exact_prior_denoises_within_the_class_and_guides():
    from distill.diffusion.exact import ClassConditionalExactDenoiser

    points, labels = torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), torch.tensor([0, 1])
    prior = ClassConditionalExactDenoiser(points, labels, build_process("flow"), num_classes=2)
    x, t = torch.zeros(2, 2), torch.full((2,), 0.5)
    x0, _ = prior.split(x, t, torch.tensor([1, -1]))
    assert torch.allclose(x0[0], points[1]) and torch.allclose(x0[1], torch.zeros(2), atol=1e-6)
    prior.cfg_scale = 3.0  # ε̂_∅ + 3(ε̂_y − ε̂_∅): the guided x̂0 overshoots class 1's point by a factor 3
    x0, _ = prior.split(x[:1], t[:1], torch.tensor([1]))
    assert torch.allclose(x0[0], 3 * points[1], atol=1e-5) and prior.evaluations_per_call(torch.tensor([1])) == 2


def test_a_points_run_under_the_exact_prior_needs_no_training(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    loaded = load_recipe(recipe(POINTS, prior={"kind": "exact", "steps": 4}))
    table = get_task("score").run(loaded, Run(tmp_path / "run", loaded))
    assert not (tmp_path / "run" / "prior").exists()
    assert table.rows[-1]["swd"] < table.rows[1]["swd"]  # the particles moved towards the data


def test_a_scene_run_under_a_trained_view_prior_with_vsd_and_a_voxel_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    mesh_file = tmp_path / "blob.off"
    ellipsoid_mesh().export(mesh_file)
    views = {"meshes": [str(mesh_file)], "count": 6, "size": 8, "held_out": 2, "surface_points": 128}
    loaded = load_recipe({"name": "v", "task": "score", "views": views,
                          "prior": {"kind": "trained", "model": "unet", "options": {"channels": [8, 16]},
                                    "train": {"steps": 3, "batch_size": 4}},
                          "guidance": {"name": "vsd"}, "object": {"kind": "gaussians", "count": 8},
                          "train": {"steps": 2, "batch_size": 2, "groups": {"fake": {"lr": 1e-4}}}})
    table = get_task("score").run(loaded, Run(tmp_path / "vsd", loaded))
    assert table.rows[-1]["model"] == "vsd" and (tmp_path / "vsd" / "prior").exists()
    voxels = load_recipe({"name": "x", "task": "score", "views": views, "prior": {"kind": "exact"},
                          "guidance": {"name": "csd"}, "object": {"kind": "voxels", "resolution": 6},
                          "train": {"steps": 2, "batch_size": 2}})
    get_task("score").run(voxels, Run(tmp_path / "vox", voxels))
    assert (tmp_path / "vox" / "scene.npz").exists()


def test_eval_and_export_of_a_score_run_say_where_the_object_is(tmp_path):
    loaded = load_recipe(POINTS)
    for call in (lambda t: t.evaluate(tmp_path, loaded), lambda t: t.export(tmp_path, loaded, "onnx")):
        with pytest.raises(ConfigError, match="particles.npz"):
            call(get_task("score"))
