"""Reading any representation file distill writes, whichever representation it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.errors import DistillError
from distill.scenes.field import KIND as FIELD_KIND
from distill.scenes.field import read_field
from distill.scenes.gaussians import read_ply
from distill.scenes.representation import Representation
from distill.scenes.voxels import read_voxels

#: the file types :func:`read_representation` reads, and what each holds
SCENE_FILES = {".ply": "3-D Gaussians (GaussianScene.save)", ".npz": "a voxel grid or a coordinate-MLP field "
               "(VoxelGrid.save, NeuralField.save)"}


def check_scene_file(path) -> Path:
    """``path`` as a ``Path``, refused unless it names an existing file of a type :func:`read_representation` reads."""
    path = Path(path)
    if path.suffix.lower() not in SCENE_FILES:
        kinds = "; ".join(f"{suffix}: {what}" for suffix, what in SCENE_FILES.items())
        raise DistillError(f"scene file {str(path)!r} is of no type distill reads ({kinds}).")
    if not path.is_file():
        raise DistillError(f"scene file {str(path)!r} does not exist; pass the path of a file written by a "
                           "representation's save().")
    return path


def read_representation(path) -> Representation:
    """The representation in ``path``: Gaussians from a ``.ply``, a field or a voxel grid from a ``.npz``
    (a field's file names its kind)."""
    path = check_scene_file(path)
    if path.suffix.lower() == ".ply":
        return read_ply(path)
    try:
        with np.load(path) as data:
            kind = str(data["kind"]) if "kind" in data.files else "voxels"
    except (OSError, ValueError) as error:
        raise DistillError(f"could not read scene file {str(path)!r} as .npz ({error}).") from error
    return read_field(path) if kind == FIELD_KIND else read_voxels(path)
