"""Representations read as volumes along rays (what conversion matches), the coordinate-MLP field, and
the Gaussians' accumulated blending weights (what compaction prunes by)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.scenes import GaussianScene, NeuralField, OrbitCameras, VoxelGrid, orbit, ray_samples
from distill.scenes.composite import compositing_weights
from distill.scenes.marching import sample_alphas


def gaussians(positions, scales, opacities, colours=None, rotations=None) -> GaussianScene:
    positions = torch.tensor(positions, dtype=torch.float64)
    n = len(positions)
    colours = torch.full((n, 1), 0.5, dtype=torch.float64) if colours is None else torch.tensor(colours)
    return GaussianScene(positions, torch.tensor(scales, dtype=torch.float64).log(),
                         torch.logit(torch.tensor(opacities, dtype=torch.float64)),
                         torch.logit(colours.double()), rotations)


def test_gaussians_read_as_a_volume_have_their_splat_opacity_along_any_ray_through_the_centre():
    rotation = torch.tensor([[0.9, 0.3, 0.2, 0.1]], dtype=torch.float64)
    scene = gaussians([[0.0, 0.0, 0.0]], [[0.2, 0.3, 0.15]], [0.6], rotations=rotation)
    cameras = OrbitCameras(torch.tensor([0.0, 70.0, 200.0]), torch.tensor([10.0, -30.0, 45.0]), 3.0).to(torch.float64)
    found = scene.ray_samples(cameras, 17, samples=256)
    logits, values = scene.point_values(found.points, found.directions[..., None, :])
    _, through = compositing_weights(sample_alphas(logits, found.delta))
    torch.testing.assert_close(1 - through[:, 8, 8], torch.full((3,), 0.6, dtype=torch.float64), atol=2e-3, rtol=0)
    splat = scene.render_depth(cameras, 17)[1]
    torch.testing.assert_close(1 - through, splat, atol=0.08, rtol=0)   # off the centre: close to the splats
    assert torch.allclose(values, torch.full_like(values, 0.5))


def test_a_gaussians_density_at_its_centre_is_its_optical_depth_over_the_ray_integral():
    scene = gaussians([[0.2, -0.1, 0.3]], [[0.1, 0.1, 0.1]], [0.5])
    logits, _ = scene.point_values(torch.tensor([[0.2, -0.1, 0.3]]), torch.tensor([[1.0, 0.0, 0.0]]))
    density = math.log(2.0) / (0.1 * math.sqrt(2 * math.pi))  # -log(1 - o) / (s sqrt(2 pi))
    torch.testing.assert_close(F.softplus(logits), torch.tensor([density], dtype=torch.float64))


def test_blending_importance_is_zero_for_gaussians_out_of_view_tiny_behind_a_wall_and_largest_in_view():
    # cameras on the +x side; an opaque wall at x = 0.3 (alpha capped at 0.99: 1 % leaks through); three
    # small Gaussians in front of it, two behind it, one far above every view and one behind the cameras
    scene = gaussians([[0.3, 0.0, 0.0], [0.7, 0.3, 0.2], [0.7, -0.3, 0.0], [0.7, 0.0, -0.3], [-0.2, 0.1, 0.1],
                       [-0.3, -0.1, 0.0], [0.0, 0.0, 40.0], [9.0, 0.0, 0.0]],
                      [[0.02, 0.8, 0.8]] + [[0.08] * 3] * 7, [0.99] + [0.9] * 7)
    cameras = OrbitCameras(torch.tensor([-15.0, 0.0, 15.0]), torch.tensor([0.0, 10.0, -10.0]), 3.0).to(torch.float64)
    importance = scene.blending_importance(cameras, 32)
    visible, hidden, outside = importance[:4], importance[4:6], importance[6:]
    assert visible.min() > 10.0 and hidden.max() < 0.05 * visible.min() and outside.max() == 0.0
    kept = scene.subset(importance.topk(4).indices.sort().values)
    torch.testing.assert_close(kept.positions, scene.positions[:4])
    with pytest.raises(ConfigError, match="at least one Gaussian"):
        scene.subset(torch.zeros(8, dtype=torch.bool))


def test_a_voxel_grid_and_a_field_render_through_the_same_marching():
    cameras = orbit(2, elevation=20.0).to(torch.float64)
    for scene in (VoxelGrid(5, channels=1, init_density=0.5, samples=24).double(),
                  NeuralField(2, 8, 1, channels=1, samples=24, generator=torch.Generator().manual_seed(0)).double()):
        found = ray_samples(cameras, 8, scene.bound, 24)
        logits, values = scene.point_values(found.points)
        weights, final = compositing_weights(sample_alphas(logits, found.delta))
        by_hand = (weights[..., None] * values).sum(-2).permute(0, 3, 1, 2)
        torch.testing.assert_close(scene.render(cameras, 8), by_hand)


def test_a_field_refuses_bad_options_by_name():
    with pytest.raises(ConfigError, match="frequencies"):
        NeuralField(frequencies=-1)
    with pytest.raises(ConfigError, match="width"):
        NeuralField(width=0)
    with pytest.raises(ConfigError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        NeuralField(channels=2)


def test_reconstruction_on_random_rays_scores_the_pixels_it_picks():
    from distill.scenes import ReconstructionObjective, ViewSet

    grid = VoxelGrid(4, channels=1, init_density=1.0, samples=8)     # uniform: the jitter changes no colour
    cameras = orbit(3, elevation=20.0)
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    objective = ReconstructionObjective(grid, ViewSet(images, cameras, torch.zeros(3, dtype=torch.long)), 6, rays=40)
    torch.manual_seed(3)
    loss = objective({"index": torch.tensor([2, 0])})["loss"]
    torch.manual_seed(3)
    torch.rand(2, 6, 6, 8)                                            # the jitter, drawn first
    pick = torch.randint(2 * 6 * 6, (40,))
    errors = (2 * grid.render(cameras[torch.tensor([2, 0])], 6) - 1 - images[[2, 0]]).pow(2)[:, 0]
    torch.testing.assert_close(loss, errors.reshape(-1)[pick].mean())
    with pytest.raises(ConfigError, match="renders whole images"):
        ReconstructionObjective(GaussianScene.random(4, channels=1), objective.views, 6, rays=8)
