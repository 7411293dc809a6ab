"""Point clouds: the kNN graph and edge features by hand, the mesh_points dataset, the PointNet and DGCNN
models, the PointDistiller loss alone and through a Distiller, and a tiny `distill run` of its recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
import yaml

from distill.cli import main
from distill.data import from_arrays, load_dataset
from distill.data.points import partial_view, random_rotation
from distill.distiller import Distiller, Match
from distill.errors import DistillError
from distill.losses import LOSSES, PointDistillerLoss
from distill.losses.pointdistiller import importance_weights
from distill.models import build_model
from distill.point_graph import edge_features, edge_linear, knn_indices

RECIPE = Path(__file__).parents[1] / "recipes" / "points" / "pointdistiller.yaml"
#: four points in a plane, (B, C, N) = (1, 2, 4): p0 (0, 0), p1 (1, 0), p2 (3, 0), p3 (0, 2)
PLANE = torch.tensor([[[0.0, 1.0, 3.0, 0.0], [0.0, 0.0, 0.0, 2.0]]])
SMALL = {"points": 32, "train_per_class": 6, "test_per_class": 3}


# --- the kNN graph -------------------------------------------------------------------------------


def test_knn_and_edge_features_match_a_hand_computation():
    # distances: p0–p1 1, p0–p3 2, p1–p2 2, p0–p2 3, p1–p3 √5, p2–p3 √13; each point is its own first neighbour
    indices = knn_indices(PLANE, 2)
    assert indices.tolist() == [[[0, 1], [1, 0], [2, 1], [3, 0]]]
    p = PLANE[0].T
    expected = torch.stack([torch.stack([torch.cat([p[j] - p[i], p[i]]) for j in row]) for i, row in
                            enumerate(indices[0].tolist())])  # (N, k, 2C)
    assert torch.equal(edge_features(PLANE, indices), expected.permute(2, 0, 1).unsqueeze(0))
    # p2's second edge: (p1 − p2, p2) = (−2, 0, 3, 0)
    assert edge_features(PLANE, indices)[0, :, 2, 1].tolist() == [-2.0, 0.0, 3.0, 0.0]
    # the graphs of chosen centres only: p3 and p1
    centres = torch.tensor([[3, 1]])
    assert torch.equal(edge_features(PLANE, indices[:, [3, 1]], centres), expected[[3, 1]].permute(2, 0, 1)[None])


def test_edge_linear_is_a_linear_layer_on_the_edge_features():
    torch.manual_seed(0)
    features, weight, bias = torch.randn(2, 5, 12), torch.randn(7, 10), torch.randn(7)
    centres = torch.tensor([[4, 0, 9], [1, 1, 2]])
    indices = knn_indices(features, 3).gather(1, centres.unsqueeze(-1).expand(-1, -1, 3))
    expected = torch.einsum("dc,bcmk->bdmk", weight, edge_features(features, indices, centres)) + bias[:, None, None]
    torch.testing.assert_close(edge_linear(features, indices, weight, bias, centres), expected)
    with pytest.raises(DistillError, match=r"\(D, 2C\) = \(D, 10\)"):
        edge_linear(features, indices, torch.randn(7, 5), centres=centres)


def test_knn_puts_each_point_first_among_duplicates_and_refuses_bad_k():
    twins = torch.zeros(1, 3, 5)
    assert knn_indices(twins, 1)[0, :, 0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(DistillError, match=r"k must be an integer in \[1, 4\]"):
        knn_indices(PLANE, 5)


# --- the dataset ---------------------------------------------------------------------------------


def test_mesh_points_shapes_classes_and_seeded_repeats():
    splits = load_dataset("mesh_points", **SMALL, partial=0.5, noise=0.01)
    assert splits.input_shape == (32, 3) and splits.num_classes == 4
    assert splits.extra["class_names"] == ["cow", "elephant", "pig", "triceratops"]
    x = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    y = torch.tensor([int(splits.train[i][1]) for i in range(len(splits.train))])
    assert x.shape == (24, 32, 3) and torch.bincount(y).tolist() == [6, 6, 6, 6]
    assert len(splits.test) == 12
    again = load_dataset("mesh_points", **SMALL, partial=0.5, noise=0.01)
    assert all(torch.equal(splits.train[i][0], again.train[i][0]) for i in range(24))
    other = load_dataset("mesh_points", **SMALL, partial=0.5, noise=0.01, seed=1)
    assert not torch.equal(splits.train[0][0], other.train[0][0])
    # train and test are independent draws: no test cloud repeats the training cloud of the same index
    assert not torch.equal(splits.train[0][0], splits.test[0][0])


def test_rotation_keeps_every_norm_and_noise_has_its_std():
    plain = load_dataset("mesh_points", **SMALL, rotation="none")
    for kind in ("z", "so3"):
        turned = load_dataset("mesh_points", **SMALL, rotation=kind)
        a, b = plain.train[5][0], turned.train[5][0]
        assert not torch.allclose(a, b)
        torch.testing.assert_close(a.norm(dim=1), b.norm(dim=1), atol=1e-5, rtol=0)
    upright = load_dataset("mesh_points", **SMALL, rotation="z").train[5][0]
    torch.testing.assert_close(upright[:, 2], plain.train[5][0][:, 2], atol=1e-6, rtol=0)  # about the up axis
    noisy = load_dataset("mesh_points", **SMALL, rotation="none", noise=0.05)
    residual = torch.stack([noisy.train[i][0] - plain.train[i][0] for i in range(24)])
    assert abs(float(residual.std()) - 0.05) < 0.005
    rotation = random_rotation("so3", np.array([0.1, 0.5, 0.9]))
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_partial_views_keep_the_half_facing_the_viewer():
    pool = np.random.default_rng(0).normal(size=(64, 3))
    direction = np.array([0.0, 0.6, 0.8])
    kept = partial_view(pool, direction, 32)
    assert kept.shape == (32, 3)
    dropped = np.array([p for p in pool if not (kept == p).all(1).any()])
    assert len(dropped) == 32 and (kept @ direction).min() >= (dropped @ direction).max()
    whole = load_dataset("mesh_points", **SMALL, rotation="none")
    cut = load_dataset("mesh_points", **SMALL, rotation="none", partial=1.0)
    # a partial view spans less of the object than a whole-surface cloud of as many points
    spread = [float(torch.pdist(s.train[i][0]).max()) for s in (whole, cut) for i in range(24)]
    assert np.mean(spread[24:]) < np.mean(spread[:24])


def _write(mesh: trimesh.Trimesh, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path


def test_mesh_folder_one_class_per_file_or_per_sub_folder(tmp_path):
    _write(trimesh.creation.box(extents=(2.0, 1.0, 0.5)), tmp_path / "files" / "box.off")
    _write(trimesh.creation.icosphere(subdivisions=2), tmp_path / "files" / "ball.ply")
    splits = load_dataset("mesh_points", mesh_folder=str(tmp_path / "files"), up="z", **SMALL)
    assert splits.extra["class_names"] == ["ball", "box"] and splits.num_classes == 2
    _write(trimesh.creation.box(), tmp_path / "families" / "boxes" / "a.off")
    _write(trimesh.creation.box(extents=(1.0, 2.0, 1.0)), tmp_path / "families" / "boxes" / "b.off")
    _write(trimesh.creation.cylinder(radius=0.5, height=2.0), tmp_path / "families" / "cans" / "c.stl")
    families = load_dataset("mesh_points", mesh_folder=str(tmp_path / "families"), up="z", **SMALL)
    assert families.extra["class_names"] == ["boxes", "cans"]
    assert families.extra["fingerprint"] != splits.extra["fingerprint"]


def test_bad_meshes_and_options_fail_with_one_clear_error(tmp_path):
    folder = tmp_path / "meshes"
    _write(trimesh.creation.box(), folder / "box.off")
    (folder / "broken.obj").write_text("this is not a mesh\n")
    with pytest.raises(DistillError, match=r"broken\.obj.*(could not read|holds no triangles)"):
        load_dataset("mesh_points", mesh_folder=str(folder), **SMALL)
    (folder / "broken.obj").unlink()
    with pytest.raises(DistillError, match="holds 1 class"):
        load_dataset("mesh_points", mesh_folder=str(folder), **SMALL)
    with pytest.raises(DistillError, match="is not a folder"):
        load_dataset("mesh_points", mesh_folder=str(tmp_path / "nowhere"))
    with pytest.raises(DistillError, match="unknown shipped mesh 'camel'"):
        load_dataset("mesh_points", meshes=["cow", "camel"])
    with pytest.raises(DistillError, match="unknown rotation 'so2'"):
        load_dataset("mesh_points", rotation="so2")
    with pytest.raises(DistillError, match="partial must lie in"):
        load_dataset("mesh_points", partial=1.5)


def test_point_sets_with_nan_are_refused():
    clouds = np.random.default_rng(0).normal(size=(6, 16, 3)).astype("float32")
    clouds[4, 7, 1] = np.nan
    labels = np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(DistillError, match="x_train has NaN or infinite values.*first at index 4"):
        from_arrays(clouds, labels, clouds[:2].copy(), labels[:2])


# --- the models ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, taps", [
    ("pointnet", {"conv1": (64, 32), "conv3": (256, 32), "pool": (256,), "head": (4,)}),
    ("dgcnn", {"edge1": (64, 32), "edge3": (128, 32), "fuse": (256, 32), "pool": (256,), "head": (4,)}),
])
def test_point_models_taps_and_order_invariance(name, taps):
    torch.manual_seed(0)
    model = build_model(name, (32, 3), 4).eval()
    seen = {}
    for path in taps:
        model.get_submodule(path).register_forward_hook(
            lambda module, args, out, path=path: seen.__setitem__(path, tuple(out.shape[1:])))
    points = torch.randn(2, 32, 3)
    logits = model(points)
    assert seen == taps
    torch.testing.assert_close(model(points[:, torch.randperm(32)]), logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name, shape, options, message", [
    ("pointnet", (32, 2), {}, r"input_shape \(N, 3\)"),
    ("pointnet", (1, 28, 28), {}, r"\(N, 3\).*mesh_points"),
    ("dgcnn", (8, 3), {"k": 9}, r"k \(neighbours per point\) must be an integer in \[1, 8\]"),
    ("pointnet", (32, 3), {"channels": []}, "list of positive layer widths"),
])
def test_point_models_refuse_bad_shapes_and_options(name, shape, options, message):
    with pytest.raises(DistillError, match=message):
        build_model(name, shape, 4, **options)


# --- the loss ------------------------------------------------------------------------------------


def test_importance_weights_by_hand():
    scores = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.sqrt(2 / 3)
    expected = 3 * np.exp(z / 0.5) / np.exp(z / 0.5).sum()
    np.testing.assert_allclose(importance_weights(scores, 0.5)[0].numpy(), expected, rtol=1e-5)
    assert importance_weights(scores, 0.5)[1].tolist() == [1.0, 1.0, 1.0]


def test_pointdistiller_is_zero_on_equal_features_and_its_gradient_flows():
    torch.manual_seed(0)
    loss = LOSSES.build("pointdistiller", k=4, num_points=8, hidden=16)
    assert isinstance(loss, PointDistillerLoss) and loss.requires == "same_positions"
    teacher = torch.randn(3, 12, 20)
    assert loss(teacher.clone(), teacher).item() == 0.0
    student = torch.randn(3, 12, 20, requires_grad=True)
    value = loss(student, teacher)
    value.backward()
    assert value.item() > 0 and student.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())


def test_pointdistiller_by_hand_on_edge_features():
    # the loss, spelled out: importance, top centres, teacher-space kNN, γ on the edges of both sides, weights
    torch.manual_seed(0)
    loss = LOSSES.build("pointdistiller", k=3, num_points=4, hidden=6, temperature=2.0)
    student, teacher = torch.randn(2, 5, 9), torch.randn(2, 5, 9)
    value = loss(student, teacher)
    scores = teacher.amax(dim=1)
    centres = scores.topk(4, dim=1).indices
    rows = knn_indices(teacher, 3).gather(1, centres.unsqueeze(-1).expand(-1, -1, 3))
    edges = torch.cat([edge_features(side, rows, centres) for side in (student, teacher)])   # (4, 10, 4, 3)
    mapped = torch.einsum("dc,bcmk->bdmk", loss.edge_layer.weight, edges) + loss.edge_layer.bias[:, None, None]
    mean, var = mapped.mean(dim=(0, 2, 3), keepdim=True), mapped.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    mapped = torch.relu((mapped - mean) / torch.sqrt(var + 1e-5))
    error = (mapped[:2] - mapped[2:]).pow(2).mean(dim=(1, 3))
    weights = importance_weights(scores.gather(1, centres), 2.0)
    torch.testing.assert_close(value, (weights * error).mean())


def test_pointdistiller_ignores_the_order_of_the_points():
    torch.manual_seed(0)
    loss = LOSSES.build("pointdistiller", k=5, hidden=8)
    student, teacher = torch.randn(2, 6, 24), torch.randn(2, 6, 24)
    order = torch.randperm(24)
    torch.testing.assert_close(loss(student[..., order], teacher[..., order]), loss(student, teacher))


def test_pointdistiller_weighs_the_important_points_more():
    # the error sits on the one point whose teacher feature is largest: reweighting makes it count more
    teacher = torch.zeros(1, 4, 10)
    teacher[0, :, 3] = 5.0
    student = teacher.clone()
    student[0, 0, 3] = 1.0
    torch.manual_seed(0)
    weighted = LOSSES.build("pointdistiller", k=3, hidden=8)
    torch.manual_seed(0)
    plain = LOSSES.build("pointdistiller", k=3, hidden=8, reweight=False)
    assert weighted(student, teacher).item() > plain(student, teacher).item() > 0


def test_pointdistiller_refuses_too_many_neighbours_and_bad_options():
    with pytest.raises(DistillError, match="must not exceed the 10 points"):
        LOSSES.build("pointdistiller", k=16)(torch.randn(2, 4, 10), torch.randn(2, 4, 10))
    with pytest.raises(DistillError, match="temperature must be > 0"):
        LOSSES.build("pointdistiller", temperature=0.0)


def test_pointdistiller_through_taps_and_a_projector():
    torch.manual_seed(0)
    student = build_model("pointnet", (32, 3), 4, channels=[8, 16])
    teacher = build_model("dgcnn", (32, 3), 4, k=4, embedding=32)
    points = torch.randn(4, 32, 3)
    pairs = {("output", "output"): "kd", ("conv2", "fuse"): Match("pointdistiller", options={"k": 4, "hidden": 8})}
    distiller = Distiller(student, teacher, pairs, example_input=points)
    adapter = distiller.pairs[1].student_adapter
    assert isinstance(adapter[-1], torch.nn.Conv1d) and (adapter[-1].in_channels, adapter[-1].out_channels) == (16, 32)
    distiller(points)
    losses = distiller.compute_losses(torch.tensor([0, 1, 2, 3]))
    losses["total"].backward()
    assert losses["pointdistiller"].item() > 0
    assert all(p.grad is not None for p in student.parameters())
    assert adapter[-1].weight.grad.abs().sum() > 0
    distiller.export()
    with pytest.raises(DistillError, match="same positions"):
        Distiller(student, teacher, {("conv2", "pool"): "pointdistiller"}, example_input=points)


# --- the recipe ------------------------------------------------------------------------------------


def test_recipe_trains_a_few_steps_through_distill_run(tmp_path):
    tree = yaml.safe_load(RECIPE.read_text())
    assert {p["loss"] for p in tree["distill"]["pairs"]} == {"kd", "pointdistiller"}
    settings = ["data.options.points=32", "data.options.train_per_class=8", "data.options.test_per_class=4",
                "teacher.train.steps=3", "train.steps=3", "train.eval_every=0", "teacher.train.eval_every=0",
                "train.log_every=3", "train.batch_size=8", "teacher.train.batch_size=8",
                "distill.pairs.1.options.num_points=16"]
    args = ["run", str(RECIPE), "--no-progress", "--out", str(tmp_path)]
    for item in settings:
        args += ["--set", item]
    assert main(args) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["name"].split(" (")[0] for r in rows] == ["teacher", "student scratch", "student distilled"]
    log = [json.loads(line) for line in (tmp_path / "distill" / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in log if "train_pointdistiller" in row]
    assert logged and all(np.isfinite(row["train_pointdistiller"]) and row["train_pointdistiller"] > 0 for row in logged)
