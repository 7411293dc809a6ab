"""The one protocol every 3-D representation implements: render C channels for B cameras, depth and
opacity, named parameter groups, save / load; and the registry that builds them by name."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import distill.scenes
from distill.errors import ConfigError, DistillError
from distill.scenes import (
    REPRESENTATIONS,
    GaussianScene,
    NeuralField,
    Representation,
    VoxelGrid,
    orbit,
    random_cameras,
    read_representation,
)


def build(name: str, **options) -> Representation:
    small = {"gaussians": {"n": 12, "generator": torch.Generator().manual_seed(0)}, "voxels": {"resolution": 6},
             "field": {"frequencies": 2, "width": 8, "depth": 1, "generator": torch.Generator().manual_seed(0)}}
    return REPRESENTATIONS.build(name, **small[name], **options)


def test_the_registry_lists_both_and_refuses_an_unknown_name():
    assert set(REPRESENTATIONS.names()) >= {"gaussians", "voxels", "field"}
    assert isinstance(build("gaussians"), GaussianScene) and isinstance(build("voxels"), VoxelGrid)
    assert isinstance(build("field"), NeuralField)
    with pytest.raises(DistillError, match="Did you mean 'voxels'"):
        REPRESENTATIONS.build("voxel")
    with pytest.raises(ConfigError, match="unexpected keyword argument 'count'"):
        REPRESENTATIONS.build("voxels", count=3)


@pytest.mark.parametrize("name", ["gaussians", "voxels", "field"])
@pytest.mark.parametrize(("channels", "features"), [(1, False), (3, False), (5, True)])
def test_every_representation_renders_c_channels_depth_and_opacity_for_b_cameras(name, channels, features):
    scene = build(name, channels=channels, features=features)
    cameras = random_cameras(3, torch.Generator().manual_seed(1))
    images = scene.render(cameras, (6, 8))
    depth, opacity = scene.render_depth(cameras, (6, 8))
    assert images.shape == (3, channels, 6, 8) and scene.channels == channels and scene.features == features
    assert depth.shape == opacity.shape == (3, 6, 8)
    assert ((opacity >= 0) & (opacity <= 1)).all() and torch.isfinite(depth).all()
    if not features:
        assert ((images >= 0) & (images <= 1)).all()


@pytest.mark.parametrize("name", ["gaussians", "voxels", "field"])
def test_a_feature_field_renders_its_raw_values_and_an_unbounded_background(name):
    scene = build(name, channels=2, features=True)
    with torch.no_grad():
        if name == "field":  # its features come out of a head: a zero weight and the bias make them constant
            scene.colour_head.weight.zero_()
            scene.colour_head.bias.fill_(-3.0)
        else:
            scene.colour_logits.fill_(-3.0)
    images = scene.render(orbit(2), 8, background=-3.0)
    assert torch.allclose(images, torch.full_like(images, -3.0), atol=1e-5)


@pytest.mark.parametrize("name", ["gaussians", "voxels", "field"])
def test_parameter_groups_hold_every_parameter_once(name):
    for features in (False, True):
        scene = build(name, channels=3, features=features)
        groups = scene.parameter_groups()
        grouped = [p for params in groups.values() for p in params]
        assert len(grouped) == len(list(scene.parameters()))
        assert {id(p) for p in grouped} == {id(p) for p in scene.parameters()}
        assert ("features" in groups) == features and ("colours" in groups) != features


@pytest.mark.parametrize("name", ["gaussians", "voxels", "field"])
@pytest.mark.parametrize(("channels", "features"), [(1, False), (3, False), (4, True)])
def test_save_then_load_renders_the_same_images(tmp_path, name, channels, features):
    scene = build(name, channels=channels, features=features)
    with torch.no_grad():
        for parameter in scene.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)))
    path = scene.save(tmp_path / f"scene{scene.suffix}")
    loaded = type(scene).load(path)
    assert type(read_representation(path)) is type(scene)
    cameras = orbit(3, elevation=20.0)
    assert loaded.channels == channels and loaded.features == features
    torch.testing.assert_close(loaded.render(cameras, 8), scene.render(cameras, 8).detach(), atol=1e-4, rtol=1e-4)
    depth, opacity = scene.render_depth(cameras, 8)
    loaded_depth, loaded_opacity = loaded.render_depth(cameras, 8)
    torch.testing.assert_close(loaded_opacity, opacity.detach(), atol=1e-4, rtol=1e-4)
    seen = opacity > 0.1
    torch.testing.assert_close(loaded_depth[seen], depth.detach()[seen], atol=1e-3, rtol=1e-3)


def test_save_and_load_refuse_wrong_files(tmp_path):
    gaussians, grid = build("gaussians"), build("voxels")
    with pytest.raises(ConfigError, match=r"\.npz"):
        grid.save(tmp_path / "grid.ply")
    with pytest.raises(DistillError, match="does not exist"):
        GaussianScene.load(tmp_path / "missing.ply")
    (tmp_path / "bad.ply").write_text("not a ply\n")
    with pytest.raises(DistillError, match="not a PLY file"):
        GaussianScene.load(tmp_path / "bad.ply")
    np.savez(tmp_path / "other.npz", density=np.zeros((2, 2, 2)))
    with pytest.raises(DistillError, match="lacks the arrays"):
        VoxelGrid.load(tmp_path / "other.npz")
    with pytest.raises(ConfigError, match="1 \\(grey\\) or 3 \\(RGB\\).*features=True"):
        gaussians.random(4, channels=2)


def test_the_shared_scene_layer_imports_no_family():
    allowed = ("distill.scenes", "distill.data", "distill.diffusion", "distill.engine", "distill.registry",
               "distill.errors")
    for path in Path(distill.scenes.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distill"):
                assert node.module.startswith(allowed), f"{path.name} imports {node.module}"


def test_distill_list_shows_the_representations(capsys):
    from distill.cli import main

    assert main(["list", "representations"]) == 0
    out = capsys.readouterr().out
    assert "gaussians" in out and "voxels" in out
