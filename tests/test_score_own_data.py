"""Score and steps on the user's own data (issue 24): mesh files standing on any axis, framed by
``views.scale`` / ``views.centre``; early checks of particle batches and data names."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import trimesh

from distill.cli import main
from distill.errors import ConfigError
from distill.experiment.recipe import load_recipe
from distill.scenes import box_mesh, mesh_fingerprint, orbit, render_mesh

README = (Path(__file__).parents[1] / "README.md").read_text()

# (x, y, z) -> (x, -z, y): a y-up mesh turned to stand on +z.
Y_TO_Z = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def figure_mesh() -> trimesh.Trimesh:
    """A y-up figure with no symmetry that hides a wrong turn: a long body, a head on one end above it,
    and a tail lower at the other end, off-centre in its file."""
    body, head, tail = box_mesh((1.2, 0.5, 0.4)), box_mesh((0.4, 0.4, 0.3)), box_mesh((0.15, 0.15, 0.6))
    head.apply_translation([0.7, 0.4, 0.0])
    tail.apply_translation([-0.6, -0.1, 0.3])
    mesh = trimesh.util.concatenate([body, head, tail])
    mesh.apply_translation([2.0, 5.0, -1.0])
    return mesh


def score_recipe(views: dict, **sections) -> dict:
    return {"name": "t", "task": "score", "views": views, "prior": {"kind": "exact"}, "guidance": {"name": "sds"},
            "object": {"kind": "gaussians", "count": 16}, "train": {"steps": 3, "batch_size": 4}, **sections}


def loaded_meshes(views: dict) -> list[trimesh.Trimesh]:
    return load_recipe(score_recipe(views)).views.load_meshes()


def renders(mesh):
    return render_mesh(mesh, orbit(4, elevation=20.0), 24)


def test_a_z_up_mesh_with_up_z_renders_as_its_y_up_original(tmp_path):
    y_up = figure_mesh()
    y_up.export(tmp_path / "y_up.obj")
    z_up = trimesh.Trimesh(y_up.vertices @ Y_TO_Z.T, y_up.faces, process=False)
    z_up.export(tmp_path / "z_up.ply")
    [standing] = loaded_meshes({"meshes": [str(tmp_path / "y_up.obj")]})
    [turned] = loaded_meshes({"meshes": [str(tmp_path / "z_up.ply")], "up": "z"})
    [lying] = loaded_meshes({"meshes": [str(tmp_path / "z_up.ply")]})
    np.testing.assert_allclose(turned.vertices, standing.vertices, atol=1e-6)
    assert (renders(turned) - renders(standing)).abs().max() < 1e-4
    assert (renders(lying) - renders(standing)).abs().mean() > 0.05  # read as y-up it lies on its side


def test_scale_and_centre_frame_mesh_files_and_shipped_meshes(tmp_path):
    figure_mesh().export(tmp_path / "figure.stl")
    path = str(tmp_path / "figure.stl")
    [half, cow] = loaded_meshes({"meshes": [path, "cow"], "scale": 0.5})
    assert np.linalg.norm(half.vertices, axis=1).max() == pytest.approx(0.5)
    assert np.linalg.norm(cow.vertices, axis=1).max() == pytest.approx(0.5)
    np.testing.assert_allclose(half.bounds.mean(0), 0.0, atol=1e-12)
    [kept] = loaded_meshes({"meshes": [path], "centre": False})  # the file's origin stays the orbit's centre
    assert np.linalg.norm(kept.vertices, axis=1).max() == pytest.approx(1.0)
    assert np.linalg.norm(kept.bounds.mean(0)) > 0.5
    with pytest.raises(ConfigError, match="views.scale"):
        load_recipe(score_recipe({"meshes": ["cow"], "scale": 3.5}))
    with pytest.raises(ConfigError, match="up"):
        load_recipe(score_recipe({"meshes": ["cow"], "up": "w"}))


def test_shipped_meshes_keep_their_axes_and_cached_view_identities():
    """Their normalised content (what the view cache is keyed by) is what it was before ``up`` existed,
    whatever ``up`` says: a shipped mesh stands on its own known axis."""
    meshes = loaded_meshes({"meshes": ["cow", "elephant", "pig", "triceratops"], "up": "x"})
    assert [mesh_fingerprint(m) for m in meshes] == ["b70a0e9e9f85b635", "a9f22530421ef24d", "a28e98505ce2a450",
                                                    "fb88ffcdb7b8b88f"]


def test_readme_mesh_recipe_stands_the_mesh_up_and_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    z_up = figure_mesh()
    z_up.vertices = z_up.vertices @ Y_TO_Z.T
    z_up.export("my_mesh.obj")
    snippet = next(b for b in re.findall(r"```yaml\n(.*?)```", README, re.DOTALL) if "up: z" in b)
    Path("my_mesh.yaml").write_text(snippet)
    recipe = load_recipe("my_mesh.yaml")
    [mesh] = recipe.views.load_meshes()
    figure = figure_mesh().vertices
    figure = figure - 0.5 * (figure.min(0) + figure.max(0))
    standing = figure / np.linalg.norm(figure, axis=1).max() * recipe.views.scale @ Y_TO_Z.T  # y-up -> world z-up
    np.testing.assert_allclose(mesh.vertices, standing, atol=1e-6)
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    args = ["run", "my_mesh.yaml", "--no-progress", "--out", "run"]
    for item in ("views.count=6", "views.size=8", "views.held_out=2", "views.surface_points=128",
                 "object.count=16", "train.steps=3"):
        args += ["--set", item]
    assert main(args) == 0
    rows = json.loads(Path("run/results.json").read_text())["rows"]
    assert rows[-1]["model"] == "sds" and all(math.isfinite(row["chamfer"]) for row in rows)


def test_particle_batch_larger_than_the_particles_is_refused_when_the_recipe_loads():
    tree = {"name": "t", "task": "score", "data": {"name": "8gaussians"}, "guidance": {"name": "sds"},
            "object": {"kind": "points", "count": 100}, "train": {"steps": 3, "batch_size": 256}}
    with pytest.raises(ConfigError, match=r"train.batch_size.*256.*object.count.*100"):
        load_recipe(tree)
    load_recipe(tree, ["train.drop_last=false"])  # the last, smaller batch is then trained on


@pytest.mark.parametrize("tree", [
    {"name": "t", "task": "steps", "data": {"name": "8gausians"}, "method": {"name": "progressive"}},
    {"name": "t", "task": "score", "data": {"name": "8gausians"}, "guidance": {"name": "sds"}},
], ids=["steps", "score"])
def test_misspelt_data_name_lists_the_toys_and_image_sets_the_family_takes(tree):
    with pytest.raises(ConfigError) as error:
        load_recipe(tree)
    message = str(error.value)
    assert "data.name" in message and "Did you mean '8gaussians'" in message
    assert re.search(r"toy.*8gaussians, checkerboard, moons, swissroll", message)
    assert re.search(r"data set.*digits.*mnist", message)
