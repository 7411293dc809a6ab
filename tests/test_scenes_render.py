"""The shared 3-D scene layer: cameras, compositing, Gaussians, voxels, meshes, outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from distill.errors import ConfigError, DistillError
from distill.scenes import (
    UP_AXIS,
    GaussianScene,
    OrbitCameras,
    VoxelGrid,
    box_mesh,
    chamfer_distance,
    composite,
    ellipsoid_mesh,
    load_mesh,
    orbit,
    pose_vector,
    random_cameras,
    render_mesh,
    sample_surface,
    shipped_mesh,
    write_ply,
    write_voxels,
)


def cameras(azimuths, elevations=None, radius=3.0, fov=45.0):
    azimuths = torch.tensor(azimuths, dtype=torch.float64)
    elevations = torch.zeros_like(azimuths) if elevations is None else torch.tensor(elevations, dtype=torch.float64)
    return OrbitCameras(azimuths, elevations, radius, fov)


def scene(positions, colours, opacity=0.99, scale=0.15):
    positions = torch.tensor(positions, dtype=torch.float64)
    n = len(positions)
    return GaussianScene(positions, torch.full((n, 3), math.log(scale), dtype=torch.float64),
                         torch.full((n,), math.log(opacity / (1 - opacity)), dtype=torch.float64),
                         torch.logit(torch.tensor(colours, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)))


def assert_gradients_match(module, loss_fn, eps=1e-6, rtol=1e-4, atol=1e-7):
    """Autograd gradients of ``loss_fn(module)`` against central differences, parameter by parameter."""
    module.zero_grad()
    loss_fn(module).backward()
    for name, param in module.named_parameters():
        numeric = torch.zeros_like(param)
        with torch.no_grad():
            for index in np.ndindex(*param.shape):
                original = param[index].item()
                param[index] = original + eps
                up = loss_fn(module).item()
                param[index] = original - eps
                down = loss_fn(module).item()
                param[index] = original
                numeric[index] = (up - down) / (2 * eps)
        assert numeric.abs().max() > 0, f"{name}: the loss does not depend on it (bad test scene)"
        torch.testing.assert_close(param.grad, numeric, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


# --- cameras -----------------------------------------------------------------------------------

def test_cameras_look_at_the_origin_with_z_up():
    cams = random_cameras(16, torch.Generator().manual_seed(0)).to(torch.float64)
    rotation = cams.rotation()
    identity = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    torch.testing.assert_close(rotation @ rotation.transpose(-1, -2), identity)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(16, dtype=torch.float64))
    origin = cams.world_to_camera(torch.zeros(1, 3, dtype=torch.float64))[:, 0]
    torch.testing.assert_close(origin, torch.stack([torch.zeros(16), torch.zeros(16), cams.radius], -1).double())
    above = cams.world_to_camera(torch.tensor([[0.0, 0.0, 0.5]], dtype=torch.float64))[:, 0]
    assert (above[:, 1] < 0).all()  # world up is image up (camera y points down)
    torch.testing.assert_close(cams.positions().norm(dim=-1), cams.radius)


def test_camera_rays_and_pose_vector():
    cams = cameras([0.0, 90.0], [0.0, 30.0])
    origins, directions = cams.rays(33)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(2, 33, 33, dtype=torch.float64))
    torch.testing.assert_close(directions[:, 16, 16], -origins / origins.norm(dim=-1, keepdim=True))
    assert cams.focal(32) == pytest.approx(16 / math.tan(math.radians(22.5)))
    torch.testing.assert_close(pose_vector(cams), torch.tensor(
        [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.5, math.sqrt(3) / 2]], dtype=torch.float64), atol=1e-12, rtol=0)


def test_orbit_and_random_cameras():
    ring = orbit(4, elevation=20.0)
    torch.testing.assert_close(ring.azimuth, torch.tensor([0.0, 90.0, 180.0, 270.0]))
    assert (ring.elevation == 20.0).all() and len(ring) == 4
    a = random_cameras(64, torch.Generator().manual_seed(1), elevation_range=(0.0, 30.0), radius=(2.0, 4.0))
    b = random_cameras(64, torch.Generator().manual_seed(1), elevation_range=(0.0, 30.0), radius=(2.0, 4.0))
    torch.testing.assert_close(a.azimuth, b.azimuth)
    assert a.elevation.min() >= 0 and a.elevation.max() <= 30 and a.radius.min() >= 2 and a.radius.max() <= 4


# --- compositing -------------------------------------------------------------------------------

def test_composite_two_layers_by_hand():
    alphas = torch.tensor([0.5, 0.25])
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    colour, opacity = composite(alphas, colours, background=0.2)
    # T = (1, 0.5), final T = 0.375: 0.5 red + 0.125 green + 0.375 * 0.2 background
    torch.testing.assert_close(colour, torch.tensor([0.575, 0.2, 0.075]))
    torch.testing.assert_close(opacity, torch.tensor(0.625))
    colour, opacity = composite(torch.tensor([1.0, 0.5]), colours, background=0.2)
    torch.testing.assert_close(colour, torch.tensor([1.0, 0.0, 0.0]))
    assert opacity == 1.0


# --- Gaussians ---------------------------------------------------------------------------------

def test_gaussian_gradients_match_finite_differences():
    torch.manual_seed(0)
    gaussians = scene([[0.2, -0.1, 0.1], [-0.15, 0.2, -0.05], [0.05, 0.1, 0.25]],
                      [[0.8, 0.3, 0.5], [0.2, 0.7, 0.4], [0.5, 0.5, 0.9]], opacity=0.6, scale=0.3)
    with torch.no_grad():
        gaussians.log_scales.add_(0.2 * torch.randn(3, 3, dtype=torch.float64))
        gaussians.rotations.add_(0.3 * torch.randn(3, 4, dtype=torch.float64))
        gaussians.opacity_logits.add_(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    views = cameras([10.0, 130.0], [15.0, -20.0])
    weights = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    assert_gradients_match(gaussians, lambda s: (s.render(views, 8, background=0.3) * weights).sum())


def test_gaussian_at_origin_renders_at_image_centre_for_every_camera():
    gaussians = scene([[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], opacity=0.9, scale=0.1)
    for cams in (orbit(8, elevation=30.0), random_cameras(8, torch.Generator().manual_seed(3))):
        image = gaussians.render(cams, 32)[:, 0]
        assert image.shape == (8, 32, 32) and image.min() >= 0 and image.max() <= 1
        centre = torch.arange(32, dtype=torch.float64) + 0.5
        mass = image.sum((1, 2))
        torch.testing.assert_close((image.sum(1) * centre).sum(-1) / mass, torch.full((8,), 16.0, dtype=torch.float64))
        torch.testing.assert_close((image.sum(2) * centre).sum(-1) / mass, torch.full((8,), 16.0, dtype=torch.float64))


def test_gaussian_depth_order_decides_the_colour():
    red, green = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    for order in ([0, 1], [1, 0]):
        positions = [[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]]
        colours = [red, green]
        gaussians = scene([positions[i] for i in order], [colours[i] for i in order], scale=0.3)
        image = gaussians.render(cameras([0.0, 180.0]), 33)[:, :, 16, 16]   # camera 0 at +x, camera 1 at -x
        assert image[0, 0] > 0.95 and image[0, 1] < 0.05, image
        assert image[1, 1] > 0.95 and image[1, 0] < 0.05, image


def test_gaussians_behind_the_camera_are_ignored():
    gaussians = scene([[5.0, 0.0, 0.0], [3.5, 0.1, 0.0]], [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], scale=0.5)
    image = gaussians.render(cameras([0.0]), 16, background=0.25)       # camera at (3, 0, 0) looking along -x
    torch.testing.assert_close(image, torch.full_like(image, 0.25))
    grey = GaussianScene.random(10, channels=1, generator=torch.Generator().manual_seed(0))
    assert grey.render(orbit(2), (12, 20)).shape == (2, 1, 12, 20)


# --- voxels ------------------------------------------------------------------------------------

def test_voxel_gradients_match_finite_differences():
    torch.manual_seed(0)
    grid = VoxelGrid(resolution=4, channels=3, bound=1.0).double()
    with torch.no_grad():
        grid.density_logits.copy_(torch.randn(4, 4, 4))
        grid.colour_logits.copy_(torch.randn(3, 4, 4, 4))
    views = cameras([20.0, 200.0], [25.0, -35.0], radius=2.5)
    weights = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    assert_gradients_match(grid, lambda g: (g.render(views, 6, samples=8, background=0.5) * weights).sum())


def test_uniform_voxel_density_matches_beer_lambert():
    grid = VoxelGrid(resolution=8, channels=1, bound=1.0, init_density=0.3).double()
    image = grid.render(cameras([0.0, 90.0]), 33, samples=16, background=1.0)
    sigma = math.log1p(math.exp(0.3))
    # the central ray crosses the cube over length 2: colour 0.5 where it is opaque, background behind
    expected = 0.5 * (1 - math.exp(-2 * sigma)) + math.exp(-2 * sigma)
    torch.testing.assert_close(image[:, 0, 16, 16], torch.full((2,), expected, dtype=torch.float64))
    corner = grid.render(cameras([0.0], [0.0], radius=3.0, fov=90.0), 33, background=1.0)[0, 0, 0, 0]
    assert corner == 1.0  # a ray that misses the cube shows the background


def test_voxel_occupied_points_are_the_dense_lattice_points():
    grid = VoxelGrid(resolution=5, channels=1, bound=1.0, init_density=-20.0)
    with torch.no_grad():
        grid.density_logits[4, 2, 0] = 10.0                 # the lattice point (1, 0, -1)
    torch.testing.assert_close(grid.occupied_points(0.1), torch.tensor([[1.0, 0.0, -1.0]]))
    torch.testing.assert_close(grid.query(torch.tensor([[1.0, 0.0, -1.0]]))[0], F.softplus(torch.tensor([10.0])))
    assert VoxelGrid(resolution=3, init_density=-20.0).occupied_points(0.1).shape == (27, 3)


# --- meshes ------------------------------------------------------------------------------------

def test_mesh_silhouettes_match_projected_areas():
    size, radius = 64, 3.0
    views = cameras([0.0, 90.0], radius=radius)
    focal = views.focal(size)
    sphere = ellipsoid_mesh((1.0, 1.0, 1.0), subdivisions=4)
    area = (render_mesh(sphere, views, size) > 0).sum((1, 2, 3)).double()
    disc = math.pi * focal ** 2 / (radius ** 2 - 1)         # the cone tangent to the unit sphere
    torch.testing.assert_close(area, torch.full((2,), disc, dtype=torch.float64), rtol=0.03, atol=0)
    box = render_mesh(box_mesh(), views, size)
    half_side = 0.5 * focal / (radius - 0.5)                # the front face, at distance 2.5, is the silhouette
    centres = torch.arange(size) + 0.5
    inside = int(((centres - size / 2).abs() <= half_side).sum())  # pixel centres the square covers, per row
    assert ((box > 0).sum((1, 2, 3)) == inside ** 2).all()
    assert box[0, 0, 32, 32] == pytest.approx(1.0, abs=1e-3)     # face-on: full headlight
    assert box.max() <= 1 and box[box > 0].min() >= 0.15 and box[0, 0, 0, 0] == 0


def test_chamfer_distance():
    points = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    assert chamfer_distance(points, points) == 0.0
    shifted = points + torch.tensor([0.01, 0.0, 0.0])
    assert chamfer_distance(points, shifted) == pytest.approx(0.01, rel=0.05)
    mesh = shipped_mesh("pig")
    a, b = sample_surface(mesh, 2000, seed=0), sample_surface(mesh, 2000, seed=1)
    assert a.shape == (2000, 3) and torch.equal(a, sample_surface(mesh, 2000, seed=0))
    assert 0 < chamfer_distance(a, b) < 0.05


def test_load_mesh_normalises_and_turns_up_to_z(tmp_path):
    raw = box_mesh((1.0, 3.0, 0.5))
    raw.apply_translation([4.0, -2.0, 1.0])
    path = tmp_path / "box.off"
    raw.export(path)
    mesh = load_mesh(path, up="y")
    norms = np.linalg.norm(mesh.vertices, axis=1)
    assert norms.max() == pytest.approx(1.0)
    np.testing.assert_allclose(mesh.bounds.mean(0), 0.0, atol=1e-12)
    extents = mesh.extents
    assert extents[2] == pytest.approx(extents.max()) and extents[1] == pytest.approx(extents.min())
    cow = shipped_mesh("cow")                                # y-up on disk: its height becomes z
    assert np.linalg.norm(cow.vertices, axis=1).max() == pytest.approx(1.0)
    assert cow.extents[0] > cow.extents[2] > cow.extents[1]
    assert set(UP_AXIS) == {"cow", "elephant", "pig", "triceratops"}


# --- outputs -----------------------------------------------------------------------------------

def test_write_ply_round_trip(tmp_path):
    gaussians = GaussianScene.random(20, generator=torch.Generator().manual_seed(0))
    path = write_ply(gaussians, tmp_path / "scene.ply")
    cloud = trimesh.load(path)
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_allclose(cloud.vertices, gaussians.positions.detach().numpy(), atol=1e-6)
    np.testing.assert_array_equal(cloud.colors[:, :3], (gaussians.colours.detach().numpy() * 255).round())
    raw = cloud.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_allclose(raw["opacity"], gaussians.opacities.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(raw["scale_1"], gaussians.scales[:, 1].detach().numpy(), rtol=1e-6)


def test_write_voxels(tmp_path):
    grid = VoxelGrid(resolution=5, channels=3, bound=1.5)
    with np.load(write_voxels(grid, tmp_path / "grid.npz")) as data:
        assert data["density"].shape == (5, 5, 5) and data["colour"].shape == (5, 5, 5, 3)
        np.testing.assert_allclose(data["bounds"], [[-1.5] * 3, [1.5] * 3])
        np.testing.assert_allclose(data["colour"], 0.5)


# --- errors ------------------------------------------------------------------------------------

def test_errors_name_the_problem(tmp_path):
    gaussians = GaussianScene.random(4)
    for size in (0, "32", (32,), (8, -1)):
        with pytest.raises(ConfigError, match="image size"):
            gaussians.render(orbit(1), size)
    for fov in (0.0, 180.0):
        with pytest.raises(ConfigError, match="fov_degrees"):
            orbit(2, fov_degrees=fov)
    with pytest.raises(ConfigError, match="elevation"):
        OrbitCameras(torch.tensor([0.0]), torch.tensor([90.0]))
    with pytest.raises(ConfigError, match=r"elevation must be a 1-D tensor of shape \(2,\)"):
        OrbitCameras(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ConfigError, match=r"positions must have shape \(N, 3\)"):
        GaussianScene(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 3))
    with pytest.raises(ConfigError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        GaussianScene(torch.zeros(3, 3), torch.zeros(3, 3), torch.zeros(3), torch.zeros(3, 2))
    with pytest.raises(ConfigError, match="background must lie in"):
        gaussians.render(orbit(1), 8, background=2.0)
    with pytest.raises(ConfigError, match="OrbitCameras"):
        gaussians.render("front", 8)
    with pytest.raises(DistillError, match="does not exist"):
        load_mesh(tmp_path / "missing.off")
    (tmp_path / "broken.off").write_text("not a mesh at all\n")
    with pytest.raises(DistillError, match="broken.off"):
        load_mesh(tmp_path / "broken.off")
    with pytest.raises(ConfigError, match="Did you mean 'cow'.*elephant, pig, triceratops"):
        shipped_mesh("cows")
    with pytest.raises(ConfigError, match="up axis"):
        load_mesh(_box_file(tmp_path), up="w")
    with pytest.raises(ConfigError, match=r"\(N, 3\)"):
        chamfer_distance(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ConfigError, match=r"\.ply"):
        write_ply(gaussians, tmp_path / "scene.txt")


def _box_file(tmp_path):
    path = tmp_path / "box.off"
    box_mesh().export(path)
    return path


def test_depth_maps_unproject_onto_the_surface_they_see():
    from distill.scenes import surface_points

    cameras = orbit(4, elevation=0.0, radius=3.0)
    grid = VoxelGrid(resolution=8, channels=1, init_density=60.0)  # an opaque cube [-1, 1]^3
    depth, opacity = grid.render_depth(cameras, 16, samples=128)
    centre = depth[:, 7:9, 7:9]
    assert (opacity[:, 7:9, 7:9] > 0.99).all() and torch.allclose(centre, torch.full_like(centre, 2.0), atol=0.05)
    points = surface_points(grid, cameras, 16)
    assert len(points) > 0 and torch.allclose(points.abs().amax(dim=1), torch.ones(len(points)), atol=0.06)
    blob = GaussianScene(torch.zeros(1, 3), torch.full((1, 3), -1.0), torch.tensor([8.0]), torch.zeros(1, 1))
    depth, opacity = blob.render_depth(cameras, 16)
    assert (opacity[:, 7:9, 7:9] > 0.9).all() and torch.allclose(depth[:, 7:9, 7:9], torch.full((4, 2, 2), 3.0), atol=1e-3)


def test_obtained_views_are_rendered_once_per_identity(tmp_path, monkeypatch):
    import distill.scenes.views as views_module

    calls = []
    render = views_module.render_views
    monkeypatch.setattr(views_module, "render_views", lambda *args: calls.append(args) or render(*args))
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))  # not the entries of the other tests
    mesh = ellipsoid_mesh(subdivisions=1)
    views, info = views_module.obtain_views([mesh], 3, 8, 0, (0.0, 30.0), 3.0, 40.0)
    again, info_again = views_module.obtain_views([mesh], 3, 8, 0, (0.0, 30.0), 3.0, 40.0)
    assert len(calls) == 1 and info_again == info and info["identity"]["meshes"] == [views_module.mesh_fingerprint(mesh)]
    assert torch.equal(again.images, views.images) and torch.equal(again.poses, views.poses)
    assert again.mesh_index.dtype == torch.int64 and again.images.shape == (3, 1, 8, 8)
    views_module.obtain_views([mesh], 3, 8, 1, (0.0, 30.0), 3.0, 40.0)  # another seed: other cameras, rendered anew
    assert len(calls) == 2
