"""Differentiable Siamese Augmentation (DSA) for dataset condensation.

Zhao & Bilen (ICML 2021), "Dataset Condensation with Differentiable Siamese Augmentation".
A real batch and a synthetic batch are augmented with the *same* random transform
(Siamese), and every transform is differentiable in the images, so the matching
loss can be back-propagated through the augmentation into the synthetic pixels.

Usage: draw once per step and apply the draw to both batches::

    dsa = DSA()
    draw = dsa.draw(generator)
    real_aug, syn_aug = dsa.apply(real, draw), dsa.apply(syn, draw)

The transforms and their default strengths follow the authors' reference code
(``ParamDiffAug`` in VICO-UoE/DatasetCondensation). As there, by default
(``mode="single"``) each draw picks *one* of the strategy's transforms at random
("color" counts as one and means brightness, then saturation, then contrast);
``mode="all"`` applies every listed transform in the order given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.errors import ConfigError, unknown_name_message

DSA_TRANSFORMS: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
DSA_MODES: tuple[str, ...] = ("single", "all")

# Uniforms drawn per batch, whatever the strategy, so one draw never depends on the batch.
_NUM_UNIFORMS = 12


@dataclass(frozen=True)
class DSADraw:
    """One random draw of every DSA parameter, shared by all images of every batch it is applied to.

    ``ops`` are the transforms this draw applies, in order. The other fields are the
    drawn values; a field is ignored when its transform is not in ``ops``:

    * ``scale``: ``(sx, sy)`` factors of the sampling grid along width and height
      (``> 1`` shrinks the content, ``< 1`` enlarges it).
    * ``rotate_degrees``: rotation angle of the sampling grid.
    * ``flip``: whether to mirror left-right.
    * ``brightness``: value added to every pixel.
    * ``saturation``: factor on each pixel's deviation from its channel mean.
    * ``contrast``: factor on each pixel's deviation from the image mean.
    * ``crop``: positions ``(rows, cols)`` in ``[0, 1)``; ``DSA.crop_shift`` maps them to
      integer translations for a given image size.
    * ``cutout``: positions ``(rows, cols)`` in ``[0, 1)``; ``DSA.cutout_box`` maps them to
      the zeroed square for a given image size.

    Positions are stored as fractions, not pixels, so a draw does not depend on the
    size of the batch (or of the images) it will be applied to.
    """

    ops: tuple[str, ...]
    scale: tuple[float, float] = (1.0, 1.0)
    rotate_degrees: float = 0.0
    flip: bool = False
    brightness: float = 0.0
    saturation: float = 1.0
    contrast: float = 1.0
    crop: tuple[float, float] = (0.5, 0.5)
    cutout: tuple[float, float] = (0.5, 0.5)

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in DSA_TRANSFORMS]
        if unknown:
            raise ConfigError(unknown_name_message("DSA transform", unknown[0], DSA_TRANSFORMS))
        for name in ("crop", "cutout"):
            position = getattr(self, name)
            if len(position) != 2 or not all(0.0 <= p < 1.0 for p in position):
                raise ConfigError(f"DSADraw.{name} must be two positions in [0, 1), got {position}; "
                                  "positions are fractions of the range of possible offsets.")


def _parse_strategy(strategy: str) -> tuple[str, ...]:
    if strategy.strip().lower() in ("", "none"):
        return ()
    names = tuple(strategy.split("_"))
    for name in names:
        if name not in DSA_TRANSFORMS:
            raise ConfigError(f"DSA strategy {strategy!r}: " + unknown_name_message("DSA transform", name,
                                                                                    DSA_TRANSFORMS)
                              + " Join names with '_', e.g. 'color_crop_cutout_scale_rotate', or use 'none'.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"DSA strategy {strategy!r} lists {', '.join(repeated)} more than once; name each "
                          "transform once.")
    return names


def _pick(u: float, count: int) -> int:
    """Index in ``0..count-1`` for a uniform ``u`` in ``[0, 1)``, equally likely each."""
    return min(int(u * count), count - 1)


class DSA:
    """Differentiable Siamese Augmentation with the reference implementation's default strengths.

    ``strategy`` joins transform names from ``DSA_TRANSFORMS`` with ``_`` (``"none"`` for no
    augmentation). The default leaves out ``flip``, which hurts digit data sets (MNIST,
    SVHN); use ``"color_crop_cutout_flip_scale_rotate"`` for natural images, as the paper does.

    Strengths: ``scale`` is the largest zoom factor (factors are drawn in ``[1/scale, scale]``
    per axis); ``rotate_degrees`` the largest angle; ``crop`` the largest translation as a
    fraction of the image side (zero padding); ``cutout`` the side of the zeroed square as a
    fraction of the image side; ``brightness`` the width of the additive offset range
    (``[-b/2, b/2]``); ``saturation`` the largest saturation factor (``[0, saturation]``);
    ``contrast`` the smallest contrast factor (``[contrast, contrast + 1]``); ``flip_prob``
    the chance of a mirror. ``mode`` is ``"single"`` (one transform per draw, the
    reference's default) or ``"all"``.
    """

    def __init__(self, strategy: str = "color_crop_cutout_scale_rotate", scale: float = 1.2,
                 rotate_degrees: float = 15.0, crop: float = 0.125, cutout: float = 0.5, brightness: float = 1.0,
                 saturation: float = 2.0, contrast: float = 0.5, flip_prob: float = 0.5,
                 mode: str = "single") -> None:
        self.names = _parse_strategy(strategy)
        self.strategy = "_".join(self.names) or "none"
        if mode not in DSA_MODES:
            raise ConfigError(unknown_name_message("DSA mode", mode, DSA_MODES))
        checks = {
            "scale": (scale, scale >= 1.0, ">= 1 (1 means no zoom)"),
            "rotate_degrees": (rotate_degrees, 0.0 <= rotate_degrees <= 180.0, "in [0, 180]"),
            "crop": (crop, 0.0 <= crop < 1.0, "in [0, 1) (a fraction of the image side)"),
            "cutout": (cutout, 0.0 <= cutout <= 1.0, "in [0, 1] (a fraction of the image side)"),
            "brightness": (brightness, brightness >= 0.0, ">= 0"),
            "saturation": (saturation, saturation >= 0.0, ">= 0"),
            "contrast": (contrast, contrast >= 0.0, ">= 0"),
            "flip_prob": (flip_prob, 0.0 <= flip_prob <= 1.0, "in [0, 1]"),
        }
        for name, (value, ok, rule) in checks.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                raise ConfigError(f"DSA {name} must be {rule}, got {value!r}.")
        self.mode = mode
        self.scale, self.rotate_degrees = float(scale), float(rotate_degrees)
        self.crop_ratio, self.cutout_ratio = float(crop), float(cutout)
        self.brightness, self.saturation, self.contrast = float(brightness), float(saturation), float(contrast)
        self.flip_prob = float(flip_prob)

    def __repr__(self) -> str:
        return (f"DSA(strategy={self.strategy!r}, mode={self.mode!r}, scale={self.scale}, "
                f"rotate_degrees={self.rotate_degrees}, crop={self.crop_ratio}, cutout={self.cutout_ratio}, "
                f"brightness={self.brightness}, saturation={self.saturation}, contrast={self.contrast}, "
                f"flip_prob={self.flip_prob})")

    # ------------------------------------------------------------------ drawing

    def draw(self, generator: torch.Generator, device: torch.device | str | None = None) -> DSADraw:
        """One random draw for a batch (any size): the same fixed number of uniforms is consumed each call.

        ``device`` is where the random numbers are generated; it defaults to the generator's device.
        """
        device = generator.device if device is None else device
        u = torch.rand(_NUM_UNIFORMS, generator=generator, device=device, dtype=torch.float64).tolist()
        if self.mode == "single":
            ops = (self.names[_pick(u[0], len(self.names))],) if self.names else ()
        else:
            ops = self.names
        low = 1.0 / self.scale
        return DSADraw(
            ops=ops,
            scale=(low + u[1] * (self.scale - low), low + u[2] * (self.scale - low)),
            rotate_degrees=(u[3] - 0.5) * 2.0 * self.rotate_degrees,
            flip=u[4] < self.flip_prob,
            brightness=(u[5] - 0.5) * self.brightness,
            saturation=u[6] * self.saturation,
            contrast=u[7] + self.contrast,
            crop=(u[8], u[9]),
            cutout=(u[10], u[11]),
        )

    # ------------------------------------------------- draw -> pixel geometry

    def crop_shift(self, draw: DSADraw, height: int, width: int) -> tuple[int, int]:
        """Integer translation ``(dy, dx)`` of ``draw`` for ``height x width`` images.

        Each lies in ``-s..s`` with ``s = round(ratio * side)``, all values equally likely;
        output pixel ``(i, j)`` reads input pixel ``(i + dy, j + dx)`` (zero outside).
        """
        shifts = []
        for position, side in zip(draw.crop, (height, width)):
            limit = int(side * self.crop_ratio + 0.5)
            shifts.append(_pick(position, 2 * limit + 1) - limit)
        return shifts[0], shifts[1]

    def cutout_box(self, draw: DSADraw, height: int, width: int) -> tuple[int, int, int, int]:
        """The zeroed square of ``draw`` for ``height x width`` images: ``(top, bottom, left, right)``, ends excluded.

        The square has side ``round(ratio * side)`` per axis and a centre drawn over the whole
        image (clipped at the borders), as in the reference; a side of 0 zeroes nothing.
        """
        box = []
        for position, side in zip(draw.cutout, (height, width)):
            size = int(side * self.cutout_ratio + 0.5)
            if size == 0:
                box += [0, 0]
                continue
            centre = _pick(position, side + (1 - size % 2))
            start = centre - size // 2
            first, last = min(max(start, 0), side - 1), min(max(start + size - 1, 0), side - 1)
            box += [first, last + 1]
        return box[0], box[1], box[2], box[3]

    # ----------------------------------------------------------------- applying

    def apply(self, images: Tensor, draw: DSADraw) -> Tensor:
        """``images`` (B, C, H, W) with ``draw``'s transforms applied identically to every image.

        Differentiable with respect to ``images``; shape, dtype and device are kept.
        """
        if images.dim() != 4:
            raise ConfigError(f"DSA needs images shaped (B, C, H, W); got {tuple(images.shape)}. Add a batch "
                              "(and channel) dimension first.")
        x = images
        for op in draw.ops:
            x = getattr(self, f"_{op}")(x, draw)
        return x.contiguous()

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """``apply(images, draw(generator))``: a fresh draw for this one batch."""
        return self.apply(images, self.draw(generator))

    # Each transform below maps (x, draw) -> x and is differentiable in x.

    def _color(self, x: Tensor, draw: DSADraw) -> Tensor:
        x = x + draw.brightness
        channel_mean = x.mean(dim=1, keepdim=True)
        x = (x - channel_mean) * draw.saturation + channel_mean
        image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - image_mean) * draw.contrast + image_mean

    def _flip(self, x: Tensor, draw: DSADraw) -> Tensor:
        return x.flip(3) if draw.flip else x

    def _sample(self, x: Tensor, matrix: list[list[float]]) -> Tensor:
        """Bilinear resampling through the 2x2 ``matrix`` (output -> input coordinates), zeros outside."""
        theta = torch.tensor([[*matrix[0], 0.0], [*matrix[1], 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _scale(self, x: Tensor, draw: DSADraw) -> Tensor:
        sx, sy = draw.scale
        return self._sample(x, [[sx, 0.0], [0.0, sy]])

    def _rotate(self, x: Tensor, draw: DSADraw) -> Tensor:
        angle = math.radians(draw.rotate_degrees)
        cos, sin = math.cos(angle), math.sin(angle)
        return self._sample(x, [[cos, -sin], [sin, cos]])

    def _crop(self, x: Tensor, draw: DSADraw) -> Tensor:
        height, width = x.shape[-2:]
        dy, dx = self.crop_shift(draw, height, width)
        pad = max(abs(dy), abs(dx))
        if pad == 0:
            return x
        padded = F.pad(x, [pad, pad, pad, pad])
        return padded[..., pad + dy: pad + dy + height, pad + dx: pad + dx + width]

    def _cutout(self, x: Tensor, draw: DSADraw) -> Tensor:
        height, width = x.shape[-2:]
        top, bottom, left, right = self.cutout_box(draw, height, width)
        rows = torch.arange(height, device=x.device)
        cols = torch.arange(width, device=x.device)
        inside = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))[None, :]
        return x * (~inside).to(x.dtype)
