"""Point clouds sampled from meshes (``mesh_points``): one class per mesh, or per folder of meshes.

Each sample is drawn on its own: points uniform on the class mesh's surface (area-weighted,
:func:`distill.scenes.meshes.sample_surface`), optionally a partial view (:func:`partial_view`), a random
rotation (:func:`random_rotation`) and Gaussian noise. The train and test samples are independent draws
from the same generator, so the test set holds no copy of a training cloud. Every sample's randomness comes
from its own seed (the dataset seed, split, class and index), and every random number is drawn whatever the
options, so a sample differs between two option sets only by what the options change (the same surface
points with and without rotation). Meshes are normalised to the unit sphere, standing on +z
(:func:`distill.scenes.meshes.load_mesh`). The shipped meshes' 1,000 clouds of 256 points take a few seconds.

``point_sets`` reads the user's own point sets from NumPy files, unlabelled (what a generator learns from).
Both are :data:`POINT_SET_DATA`: the step-distillation family generates and scores them as point sets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays
from distill.errors import ConfigError, DistillError, check_count, check_fraction, unknown_name_message

ROTATIONS = ("none", "z", "so3")
#: File suffixes read as meshes in a ``mesh_folder`` (what trimesh reads).
MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl", ".glb", ".gltf")
_SPLITS = {"train": 0, "test": 1}
#: the data sets whose samples are point sets (N, 3)
POINT_SET_DATA = ("mesh_points", "point_sets")


def random_rotation(kind: str, uniforms: np.ndarray) -> np.ndarray:
    """A ``(3, 3)`` rotation from three uniforms in [0, 1): none (the identity), ``z`` (about the up axis
    +z by ``2π·u₀``, the usual ModelNet augmentation) or ``so3`` (uniform over all rotations, Shoemake 1992,
    "Uniform random rotations")."""
    import trimesh

    if kind == "none":
        return np.eye(3)
    if kind == "z":
        return trimesh.transformations.rotation_matrix(2 * np.pi * uniforms[0], [0.0, 0.0, 1.0])[:3, :3]
    return trimesh.transformations.random_rotation_matrix(rand=uniforms)[:3, :3]


def partial_view(pool: np.ndarray, direction: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` points of ``pool`` ``(M, 3)`` farthest along ``direction``: the points on one side of a
    plane across ``direction`` (a viewer's side of the object, without self-occlusion), in pool order."""
    if not 1 <= keep <= len(pool):
        raise DistillError(f"a partial view keeps between 1 and {len(pool)} points of its pool, not {keep}.")
    order = np.argsort(-(pool @ direction), kind="stable")[:keep]
    return pool[np.sort(order)]


def _mesh_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def _folder_classes(mesh_folder: object) -> dict[str, list[Path]]:
    """Class name → mesh files: one class per sub-folder of meshes (a family), else one per mesh file."""
    folder = Path(str(mesh_folder)).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"mesh_folder {str(folder)!r} is not a folder; pass a folder of mesh files (one class "
                          f"each) or of sub-folders of mesh files (one class each).")
    families = {d.name: _mesh_files(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    families = {name: files for name, files in families.items() if files}
    classes = families or {p.stem: [p] for p in _mesh_files(folder)}
    if len(classes) < 2:
        raise ConfigError(f"mesh_folder {str(folder)!r} holds {len(classes)} class(es); classification needs 2 or "
                          f"more: put 2+ mesh files ({', '.join(MESH_SUFFIXES)}) in it, or 2+ sub-folders of them.")
    return classes


def _load(files: list[Path], up: str) -> list:
    from distill.scenes.meshes import load_mesh

    return [load_mesh(path, up) for path in files]


def _meshes(meshes: object, mesh_folder: object, up: str) -> dict[str, list]:
    """Class name → its normalised meshes."""
    from distill.scenes.meshes import UP_AXIS, shipped_mesh

    if mesh_folder is not None:
        if meshes is not None:
            raise ConfigError("give meshes (shipped mesh names) or mesh_folder (your own meshes), not both.")
        return {name: _load(files, up) for name, files in _folder_classes(mesh_folder).items()}
    names = sorted(UP_AXIS) if meshes is None else meshes
    if isinstance(names, str) or not isinstance(names, list | tuple) or len(set(names)) < 2:
        raise ConfigError(f"meshes must list 2 or more different shipped meshes (one class each) from "
                          f"{sorted(UP_AXIS)}, got {meshes!r}; for your own meshes use mesh_folder.")
    for name in names:
        if name not in UP_AXIS:
            raise ConfigError(unknown_name_message("shipped mesh", str(name), UP_AXIS))
    return {name: [shipped_mesh(name)] for name in names}


def _sample(family: list, rng: np.random.Generator, points: int, rotation: str, partial: float,
            noise: float) -> np.ndarray:
    """One cloud ``(points, 3)``; draws the same random numbers whatever the options."""
    from distill.scenes.meshes import sample_surface

    mesh = family[int(rng.integers(len(family)))]
    pool = sample_surface(mesh, 2 * points, seed=int(rng.integers(2**31))).numpy().astype(np.float64)
    direction, cut = rng.normal(size=3), rng.random() < partial
    turn, jitter = rng.random(3), rng.normal(size=(points, 3))
    cloud = partial_view(pool, direction / np.linalg.norm(direction), points) if cut else pool[:points]
    return cloud @ random_rotation(rotation, turn).T + noise * jitter


def _split(classes: dict[str, list], split: str, per_class: int, seed: int, **options) -> tuple[np.ndarray, np.ndarray]:
    clouds, labels = [], []
    for label, family in enumerate(classes.values()):
        for index in range(per_class):
            rng = np.random.default_rng([seed, _SPLITS[split], label, index])
            clouds.append(_sample(family, rng, **options))
            labels.append(label)
    return np.stack(clouds).astype(np.float32), np.array(labels, dtype=np.int64)


@DATASETS.register("mesh_points")
def load_mesh_points(meshes: list[str] | None = None, mesh_folder: str | None = None, up: str = "y",
                     points: int = 256, train_per_class: int = 200, test_per_class: int = 50, rotation: str = "z",
                     partial: float = 0.0, noise: float = 0.0, seed: int = 0) -> DataSplits:
    """Point clouds ``(points, 3)`` of meshes, one class per mesh (or folder of meshes); rotation, partial views, noise.

    ``meshes``: shipped meshes by name (default all four: cow, elephant, pig, triceratops), or
    ``mesh_folder``: your own, one class per mesh file or per sub-folder of mesh files, named after it
    (``up``: the axis they stand on, y as in the shipped ones). ``rotation``: none, z (about the up axis)
    or so3; ``partial``: the share of clouds that are partial views (the half of a twice-as-large surface
    sample nearest a random viewing direction); ``noise``: the std of Gaussian noise added to every
    coordinate (the clouds fit the unit sphere). ``extra`` holds ``class_names`` and a ``fingerprint`` of
    the meshes.
    """
    from distill.engine.cache import array_hash
    from distill.scenes.views import mesh_fingerprint

    check_count("points", points)
    check_count("train_per_class", train_per_class)
    check_count("test_per_class", test_per_class)
    if rotation not in ROTATIONS:
        raise ConfigError(unknown_name_message("rotation", str(rotation), ROTATIONS))
    partial = check_fraction("partial", partial, "the share of clouds that are partial views")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0.0 <= noise < float("inf"):
        raise ConfigError(f"noise must be a finite std >= 0 (in units of the unit sphere the clouds fit), got {noise!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}.")
    classes = _meshes(meshes, mesh_folder, up)
    options = {"points": points, "rotation": rotation, "partial": partial, "noise": float(noise)}
    x_train, y_train = _split(classes, "train", train_per_class, seed, **options)
    x_test, y_test = _split(classes, "test", test_per_class, seed, **options)
    try:
        splits = from_arrays(x_train, y_train, x_test, y_test, num_classes=len(classes))
    except DistillError as err:
        raise DistillError(f"mesh_points: the sampled clouds are unusable ({err}); check the meshes "
                           f"{sorted(classes)}.") from None
    fingerprint = array_hash(np.array(list(classes)),
                             np.array([mesh_fingerprint(m) for family in classes.values() for m in family]))
    extra = {"class_names": list(classes), "fingerprint": fingerprint}
    return dataclasses.replace(splits, name="mesh_points", extra=extra)


@DATASETS.register("point_sets")
def load_point_sets(train: str, test: str) -> DataSplits:
    """Your own point sets: ``train`` and ``test`` are each an ``.npy`` of shape ``(S, N, 3)`` (S sets of N points
    of x, y, z; float) or an ``.npz`` holding it as ``x``; unlabelled, read as the ``arrays`` data set reads them
    (non-finite values refused). Scale them to about the unit sphere: the flows start from unit Gaussian noise."""
    from distill.data.files import load_arrays

    splits = load_arrays(train, test, unlabelled=True)
    shape = tuple(splits.input_shape)
    if len(shape) != 2 or shape[1] != 3 or shape[0] < 2:
        raise ConfigError(f"point_sets: the arrays hold samples of shape {shape}; point sets are (S, N, 3) arrays, "
                          f"S sets of N >= 2 points of (x, y, z) each (e.g. clouds.reshape(S, N, 3)).")
    return dataclasses.replace(splits, name="point_sets")
