"""Scene files: binary PLY vertex tables (what Gaussian-splat viewers and ``trimesh`` open) and the
suffix check every writer makes. Each representation lays out its own columns (see its ``save``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.errors import ConfigError, DistillError

_PLY_TYPES = {"<f4": "float", "u1": "uchar"}
_NUMPY_TYPES = {name: kind for kind, name in _PLY_TYPES.items()}


def checked_path(path, suffix: str, writer: str) -> Path:
    """``path`` as a ``Path``, refused unless it ends in ``suffix``."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ConfigError(f"{writer} writes {suffix} files; got the path {str(path)!r}. Name it e.g. scene{suffix}.")
    return path


def write_ply_vertices(path: Path, table: np.ndarray, comment: str) -> Path:
    """Write the structured array ``table`` (fields of float32 ``<f4`` or uint8 ``u1``) as the vertex
    element of a binary little-endian PLY file, one property per field, and return the path."""
    header = ["ply", "format binary_little_endian 1.0", f"comment {comment}", f"element vertex {len(table)}"]
    header += [f"property {_PLY_TYPES[table.dtype[name].str.lstrip('|')]} {name}" for name in table.dtype.names]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(("\n".join(header + ["end_header"]) + "\n").encode("ascii"))
        handle.write(table.tobytes())
    return path


def read_ply_vertices(path) -> np.ndarray:
    """The vertex table of a binary little-endian PLY file of float / uchar properties (as
    :func:`write_ply_vertices` writes) as a structured array."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"scene file {str(path)!r} does not exist.")
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise DistillError(f"{str(path)!r} is not a PLY file (no 'ply' ... 'end_header' header).")
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise DistillError(f"{str(path)!r} is not a binary little-endian PLY file; only those are read.")
    count = next((int(line.split()[2]) for line in lines if line.startswith("element vertex")), None)
    fields = [line.split()[1:] for line in lines if line.startswith("property")]
    unknown = [kind for kind, _ in fields if kind not in _NUMPY_TYPES]
    if count is None or unknown:
        raise DistillError(f"{str(path)!r} has no vertex element or properties of types {unknown} "
                           f"(only {', '.join(_NUMPY_TYPES)} are read).")
    dtype = np.dtype([(name, _NUMPY_TYPES[kind]) for kind, name in fields])
    body = data[end + len(b"end_header\n"):]
    if len(body) < count * dtype.itemsize:
        raise DistillError(f"{str(path)!r} is truncated: {count} vertices need {count * dtype.itemsize} bytes, "
                           f"the file has {len(body)}.")
    return np.frombuffer(body, dtype=dtype, count=count)
