"""A coordinate-MLP radiance field: a small network from a point to its density and colour (NeRF).

A point of ``[-bound, bound]^3`` is scaled to ``[-1, 1]^3`` and positionally encoded,
``gamma(p) = (p, sin(2^k pi p), cos(2^k pi p))`` for ``k < frequencies`` (Mildenhall et al. 2020), then
an MLP of ``depth`` hidden ReLU layers of ``width`` units feeds two linear heads: one density logit and
``C`` channel logits (softplus density, sigmoid colour, as :class:`~distill.scenes.voxels.VoxelGrid` activates its
lattice values). It has no view dependence. Rendered by the ray marching every
:class:`~distill.scenes.marching.VolumeField` shares; registered in ``REPRESENTATIONS`` as ``field``; saved
as a compressed ``.npz`` holding its weights and, for viewers, its density and colour sampled on a lattice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from distill.errors import ConfigError, DistillError, check_count
from distill.scenes.io import checked_path
from distill.scenes.marching import VolumeField
from distill.scenes.representation import REPRESENTATIONS, check_channels

KIND = "field"
LATTICE = 32  # the lattice the saved file samples density and colour on, for viewers


def positional_encoding(points: Tensor, frequencies: int) -> Tensor:
    """``(p, sin(2^k pi p), cos(2^k pi p))`` for ``k < frequencies`` of points ``(..., 3)``: ``(..., 3 + 6 L)``."""
    scaled = points[..., None, :] * (math.pi * 2.0 ** torch.arange(frequencies, dtype=points.dtype,
                                                                  device=points.device))[:, None]
    return torch.cat([points, scaled.sin().flatten(-2), scaled.cos().flatten(-2)], dim=-1)


@REPRESENTATIONS.register(KIND)
class NeuralField(VolumeField):
    """A coordinate MLP over ``[-bound, bound]^3`` (NeRF without view dependence): ``frequencies`` octaves of
    positional encoding, ``depth`` hidden layers of ``width`` ReLU units, ``C`` channels (1 grey, 3 RGB, or
    any for a feature field). The output bias starts the density logit at ``init_density`` (nearly empty)
    and the colours grey; weights are drawn as ``nn.Linear`` draws them, from ``generator`` when given.
    ``samples``: ray samples per pixel when rendering."""

    suffix = ".npz"

    def __init__(self, frequencies: int = 6, width: int = 64, depth: int = 3, channels: int = 3,
                 bound: float = 1.0, init_density: float = -2.0, features: bool = False, samples: int = 64,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(frequencies, int) or isinstance(frequencies, bool) or frequencies < 0:
            raise ConfigError(f"frequencies must be an int >= 0, got {frequencies!r}.")
        check_count("width", width)
        check_count("depth", depth)
        check_channels(channels, features)
        if not bound > 0:
            raise ConfigError(f"bound must be > 0, got {bound!r}.")
        self.samples = check_count("samples", samples)
        self.frequencies, self.width, self.depth, self.bound = frequencies, width, depth, float(bound)
        self.init_density, self._features = float(init_density), bool(features)
        sizes = [3 + 6 * frequencies] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.density_head, self.colour_head = nn.Linear(width, 1), nn.Linear(width, channels)
        with torch.no_grad():
            for layer in [*self.layers, self.density_head, self.colour_head]:  # nn.Linear's draw, from generator
                limit = 1 / math.sqrt(layer.in_features)
                layer.weight.copy_(2 * limit * torch.rand(layer.weight.shape, generator=generator) - limit)
                layer.bias.copy_(2 * limit * torch.rand(layer.bias.shape, generator=generator) - limit)
            self.density_head.bias.fill_(init_density)
            self.colour_head.bias.zero_()

    @property
    def channels(self) -> int:
        return self.colour_head.out_features

    @property
    def features(self) -> bool:
        return self._features

    def options(self) -> dict:
        """The constructor's arguments that make this architecture (what the saved file records)."""
        return {"frequencies": self.frequencies, "width": self.width, "depth": self.depth, "channels": self.channels,
                "bound": self.bound, "init_density": self.init_density, "features": self.features,
                "samples": self.samples}

    def point_values(self, points: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density logits ``(...)`` and activated channel values ``(..., C)`` at world ``points`` ``(..., 3)``."""
        h = positional_encoding(points.to(self.layers[0].weight) / self.bound, self.frequencies)
        for layer in self.layers:
            h = torch.relu(layer(h))
        values = self.colour_head(h)
        return self.density_head(h)[..., 0], values if self.features else torch.sigmoid(values)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The shared trunk, the density head and the colour (or feature) head."""
        return {"network": list(self.layers.parameters()), "density": list(self.density_head.parameters()),
                "features" if self.features else "colours": list(self.colour_head.parameters())}

    def save(self, path) -> Path:
        """Write the field as a compressed ``.npz`` (see :func:`write_field`)."""
        return write_field(self, path)

    @classmethod
    def load(cls, path) -> NeuralField:
        """The field :func:`write_field` wrote to ``path`` (see :func:`read_field`)."""
        return read_field(path)


def write_field(field: NeuralField, path) -> Path:
    """Write ``field`` to a compressed ``.npz`` and return the path.

    Arrays: ``kind`` (``"field"``), ``options`` (its constructor's arguments as JSON) and ``weight:<name>``
    for every parameter, which :func:`read_field` restores exactly; for viewers, as a voxel file holds them,
    ``density`` ``(D, D, D)`` (per unit length) and ``colour`` ``(D, D, D, C)`` in [0, 1] (``features`` for a
    feature field) sampled at ``D = 32`` lattice points per axis indexed ``[x, y, z]``, and ``bounds`` ``(2, 3)``.
    """
    if not isinstance(field, NeuralField):
        raise ConfigError(f"write_field needs a NeuralField, got {type(field).__name__}.")
    path = checked_path(path, ".npz", "write_field")
    axis = torch.linspace(-field.bound, field.bound, LATTICE)
    lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    with torch.no_grad():
        density, values = field.query(lattice)
        weights = {f"weight:{name}": p.detach().float().cpu().numpy() for name, p in field.named_parameters()}
    bounds = np.array([[-field.bound] * 3, [field.bound] * 3], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, kind=np.array(KIND), options=np.array(json.dumps(field.options())), bounds=bounds,
                        density=density.float().cpu().numpy(),
                        **{"features" if field.features else "colour": values.float().cpu().numpy()}, **weights)
    return path


def read_field(path) -> NeuralField:
    """The ``NeuralField`` :func:`write_field` wrote to ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"scene file {str(path)!r} does not exist.")
    with np.load(path) as data:
        if "kind" not in data.files or str(data["kind"]) != KIND or "options" not in data.files:
            raise DistillError(f"{str(path)!r} is not a NeuralField file written by distill: it lacks the arrays "
                               "kind = 'field' and options.")
        field = NeuralField(**json.loads(str(data["options"])))
        state = {name: torch.from_numpy(data[f"weight:{name}"]) for name, _ in field.named_parameters()
                 if f"weight:{name}" in data.files}
    if len(state) != len(list(field.parameters())):
        raise DistillError(f"{str(path)!r} lacks some of the field's weights; write it with NeuralField.save.")
    field.load_state_dict(state)
    return field
