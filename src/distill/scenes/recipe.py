"""The recipe section every family that learns from renders of meshes shares: which meshes, how they
are framed, the cameras of the training views and of the held-out views that score the result."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from distill.engine.config import StrictModel
from distill.errors import ConfigError
from distill.scenes.cameras import OrbitCameras, orbit
from distill.scenes.views import resolve_mesh


class ViewsSpec(StrictModel):
    """What is learnt from: ``count`` renders of each mesh (a shipped name — cow, elephant, pig,
    triceratops — or a mesh file trimesh reads: .off, .obj, .ply, .stl) from cameras drawn uniformly in
    azimuth and ``elevation`` (degrees); ``held_out`` cameras on an orbit score the result and are never
    trained on. Mesh files stand on their ``up`` axis (shipped meshes on their own); each mesh
    is centred on its bounding-box centre (``centre: false`` keeps the file's origin) and scaled so its
    farthest vertex is ``scale`` from the centre the cameras orbit."""

    meshes: list[str] = Field(default_factory=lambda: ["cow"], min_length=1)
    up: Literal["x", "-x", "y", "-y", "z", "-z"] = "y"
    scale: float = Field(1.0, gt=0)
    centre: bool = True
    count: PositiveInt = 100
    size: PositiveInt = 32
    elevation: tuple[float, float] = (0.0, 30.0)
    radius: float = Field(3.0, gt=1)
    fov: float = Field(45.0, gt=0, lt=180)
    held_out: PositiveInt = 16
    surface_points: PositiveInt = 4096
    seed: int = 0

    @model_validator(mode="after")
    def _elevation_range(self) -> ViewsSpec:
        low, high = self.elevation
        if not -90 < low <= high < 90:
            raise ConfigError(f"views.elevation must satisfy -90 < low <= high < 90 degrees, got {self.elevation}.")
        if self.scale >= self.radius:
            raise ConfigError(f"views.scale ({self.scale}) must stay below views.radius ({self.radius}), or the "
                              "cameras sit inside the mesh; lower scale or raise radius.")
        return self

    def load_meshes(self) -> list:
        """The meshes, read and normalised as this section says."""
        return [resolve_mesh(name, self.up, self.scale, self.centre) for name in self.meshes]

    def held_out_cameras(self) -> OrbitCameras:
        """The ``held_out`` cameras: an orbit at the middle elevation, its azimuths halfway between
        ``held_out`` even steps (so none repeats a round training azimuth)."""
        return orbit(self.held_out, elevation=sum(self.elevation) / 2, radius=self.radius, fov_degrees=self.fov,
                     start_azimuth=180.0 / self.held_out)
