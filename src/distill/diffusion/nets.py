"""Denoiser networks ``net(x, t, y=None, d=None) -> Tensor shaped like x`` for diffusion and flows.

``t`` is the time in [0, 1] (a float or one value per row), ``y`` an optional
class label, ``d`` an optional extra scalar in [0, 1] of step-conditioned nets: the step
size of shortcut models, or the guidance scale of a guidance-distilled student, rescaled
from its training range. What the output means (noise, velocity, clean sample) is the
caller's choice.

- :class:`ConditionEmbedding` turns (t, y, d) into one vector per row.
- :class:`TimeMLP` for 2-D toys and flattened vectors (also (C, H, W) input).
- :class:`UNet`, a small DDPM-style U-Net for 8×8 and 28×28 images.
- :class:`PointSetNet`, a PointNet-style set network for point sets (N, 3), equivariant to the points' order.
- :func:`build_denoiser` builds any of them by name from an ``input_shape``.

Module paths: ``embed.time``, ``embed.label``, ``embed.step`` (the embedding);
TimeMLP ``inp``, ``blocks.K``, ``out``; UNet ``inp``, ``down.K``, ``mid.K``, ``up.K``, ``out``;
PointSetNet ``inp``, ``blocks.K`` (``blocks.K.pool``: the block's global feature), ``out``.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.errors import DistillError, check_int, positive_ints
from distill.models.points import MaxOverPoints
from distill.registry import Registry

DENOISERS: Registry = Registry("denoiser")

#: t ∈ [0, 1] is multiplied by this before the sinusoids, so the features match DDPM's
#: integer timesteps 0…1000 (Ho et al. 2020)
TIME_SCALE = 1000.0
#: number of sinusoidal features (half sines, half cosines) fed to the embedding MLPs
FREQ_DIM = 128


def sinusoidal_embedding(
    t: Tensor, dim: int, scale: float = TIME_SCALE, max_period: float = 10000.0
) -> Tensor:
    """Transformer sinusoidal features (Vaswani et al. 2017) of ``scale · t``, as DDPM embeds time.

    ``t`` has shape (B,); the result (B, dim) is ``[cos(scale·t·f_k), sin(scale·t·f_k)]``
    for frequencies ``f_k = max_period^(-k / (dim/2))``, k = 0 … dim/2 − 1.
    """
    if dim < 2 or dim % 2:
        raise DistillError(f"sinusoidal_embedding needs an even dim >= 2, got {dim!r}.")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _per_row(value: float | Tensor, batch: int, like: Tensor, what: str) -> Tensor:
    """``value`` as a float tensor of shape (batch,): a scalar is repeated for every row."""
    value = torch.as_tensor(value, device=like.device)
    if value.numel() == 1:
        return value.reshape(1).expand(batch).float()
    if value.numel() != batch:
        raise DistillError(
            f"{what} must be one number or one per row ({batch}), got shape {tuple(value.shape)}."
        )
    return value.reshape(batch).float()


class ConditionEmbedding(nn.Module):
    """One conditioning vector per row from time, class and step size.

    - time: sinusoidal features of 1000·t (Vaswani et al. 2017; Ho et al. 2020) → Linear-SiLU-Linear.
    - class (``num_classes > 0``): ``nn.Embedding(num_classes + 1, dim)`` whose last row is the
      "null" class of classifier-free guidance (Ho & Salimans 2022); ``y=None`` or a negative
      label means null, so label dropout is ``y.masked_fill(drop, -1)``.
    - step size (``step_conditioned``): d ∈ [0, 1], the step size of shortcut models (Frans et al.
      2024) or a guidance-distilled student's guidance scale rescaled to [0, 1] (Meng et al. 2023;
      LCM's guidance embedding, Luo et al. 2023), embedded like t by its own MLP whose last Linear
      is zero-initialised: a step-conditioned net loaded (``strict=False``) from a plain one
      computes exactly the same function.
    - pose (``pose_dim > 0``): ``y`` is then a float vector per row (e.g. a camera's
      (sin az, cos az, sin el, cos el)), embedded by Linear-SiLU-Linear: the view conditioning of
      view-conditioned priors (as Zero-1-to-3, Liu et al. 2023, conditions on the camera).
    """

    def __init__(
        self, dim: int, num_classes: int = 0, step_conditioned: bool = False, freq_dim: int = FREQ_DIM,
        pose_dim: int = 0,
    ) -> None:
        super().__init__()
        if pose_dim and num_classes:
            raise DistillError(f"a denoiser is conditioned on classes (num_classes={num_classes}) or on a pose "
                               f"vector (pose_dim={pose_dim}), not both; set one of them to 0.")
        self.dim, self.num_classes, self.freq_dim, self.pose_dim = dim, num_classes, freq_dim, pose_dim
        self.step_conditioned = step_conditioned
        self.pose = _embedding_mlp(pose_dim, dim) if pose_dim else None
        self.time = _embedding_mlp(freq_dim, dim)
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None
        if self.label is not None:
            nn.init.normal_(self.label.weight, std=0.02)  # as DiT (Peebles & Xie 2023)
        self.step = _embedding_mlp(freq_dim, dim) if step_conditioned else None
        if self.step is not None:
            nn.init.zeros_(self.step[-1].weight)
            nn.init.zeros_(self.step[-1].bias)

    def forward(
        self, t: float | Tensor, like: Tensor, y: Tensor | None = None, d: float | Tensor | None = None
    ) -> Tensor:
        """(B, dim) embedding for the batch ``like`` (only its length and device are used)."""
        batch = like.shape[0]
        dtype = self.time[0].weight.dtype
        t = _per_row(t, batch, like, "t")
        emb = self.time(sinusoidal_embedding(t, self.freq_dim).to(dtype))
        if self.pose is not None:
            return self._with_step(emb + self._pose(y, batch, dtype), like, d)
        if y is not None and self.label is None:
            raise DistillError(
                "this denoiser is unconditional (num_classes=0) but got labels y; "
                "build it with num_classes > 0 or pass y=None."
            )
        if self.label is not None:
            if y is None:
                labels = torch.full((batch,), self.num_classes, device=like.device, dtype=torch.long)
            else:
                labels = torch.as_tensor(y, device=like.device).long().reshape(-1)
                if labels.numel() != batch:
                    raise DistillError(
                        f"y must hold one label per row ({batch}), got shape {tuple(labels.shape)}."
                    )
                labels = torch.where(labels < 0, self.num_classes, labels)
            emb = emb + self.label(labels)
        return self._with_step(emb, like, d)

    def _pose(self, y: Tensor | None, batch: int, dtype: torch.dtype) -> Tensor:
        if not isinstance(y, Tensor) or y.dim() != 2 or tuple(y.shape) != (batch, self.pose_dim) or not y.is_floating_point():
            raise DistillError(f"this denoiser is view-conditioned (pose_dim={self.pose_dim}): y must be a float "
                               f"tensor of shape ({batch}, {self.pose_dim}), got "
                               f"{None if y is None else (tuple(y.shape), str(y.dtype))}.")
        return self.pose(y.to(dtype))

    def _with_step(self, emb: Tensor, like: Tensor, d: float | Tensor | None) -> Tensor:
        batch, dtype = like.shape[0], emb.dtype
        if d is not None and self.step is None:
            raise DistillError(
                "this denoiser was built without step_conditioned=True but got a step size d; "
                "build it with step_conditioned=True or pass d=None."
            )
        if self.step is not None:
            d = _per_row(0.0 if d is None else d, batch, like, "d")
            emb = emb + self.step(sinusoidal_embedding(d, self.freq_dim).to(dtype))
        return emb


def _embedding_mlp(freq_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


class _MLPBlock(nn.Module):
    """Pre-norm residual block: h + fc2(SiLU(fc1(SiLU(LN(h))) + W·SiLU(emb)))."""

    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        a = self.fc1(F.silu(self.norm(h))) + self.emb(F.silu(emb))
        return h + self.fc2(F.silu(a))


class TimeMLP(nn.Module):
    """Residual MLP denoiser for 2-D toys and flattened vectors, time added in every block.

    The usual toy flow-matching/diffusion network (e.g. Lipman et al. 2023; Tong et al. 2024)
    with a DDPM-style sinusoidal time embedding (Ho et al. 2020), CFG null class (Ho & Salimans
    2022) and shortcut step input (Frans et al. 2024) from :class:`ConditionEmbedding`. Takes
    (B, dim_in) or any (B, ...) with dim_in features, e.g. (B, 1, 8, 8), and returns x's shape.
    """

    def __init__(
        self, dim_in: int, hidden: int = 256, depth: int = 3, num_classes: int = 0,
        step_conditioned: bool = False, pose_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim_in = dim_in
        self.embed = ConditionEmbedding(hidden, num_classes, step_conditioned, pose_dim=pose_dim)
        self.inp = nn.Linear(dim_in, hidden)
        self.blocks = nn.ModuleList(_MLPBlock(hidden, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim_in))

    def forward(
        self, x: Tensor, t: float | Tensor, y: Tensor | None = None, d: float | Tensor | None = None
    ) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim_in:
            raise DistillError(
                f"TimeMLP was built for {self.dim_in} features per row, got x of shape {tuple(x.shape)}."
            )
        emb = self.embed(t, x, y, d)
        h = self.inp(flat)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h).reshape(x.shape)


class ResBlock(nn.Module):
    """DDPM residual block (Ho et al. 2020): GN-SiLU-conv3×3, + per-channel embedding bias,
    GN-SiLU-conv3×3, plus a 1×1 skip when the width changes."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _Up(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a 3×3 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """A small DDPM U-Net (Ho et al. 2020; Ronneberger et al. 2015) for 8×8 and 28×28 images.

    One :class:`ResBlock` per level with a stride-2 conv down (28→14→7, 8→4→2 for two
    levels), two ResBlocks in the middle, nearest+conv up with concatenated skips, and a
    zero-initialised output conv (so the net outputs 0 at init). Time/class/step enter every
    ResBlock as a per-channel bias from :class:`ConditionEmbedding` (width 4·channels[0]).
    H and W must be divisible by 2**len(channels).
    """

    def __init__(
        self, in_channels: int = 1, channels: Sequence[int] = (32, 64), num_classes: int = 0,
        step_conditioned: bool = False, groups: int = 8, pose_dim: int = 0,
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        if not channels or not positive_ints(channels) or not positive_ints([groups]):
            raise DistillError(
                f"UNet: channels must be positive widths and groups a positive int, "
                f"got channels={channels!r}, groups={groups!r}."
            )
        if any(c % groups for c in channels):
            raise DistillError(
                f"UNet: every width in channels={channels} must be divisible by groups={groups} "
                "(GroupNorm)."
            )
        self.in_channels, self.channels = in_channels, channels
        emb_dim = 4 * channels[0]
        self.embed = ConditionEmbedding(emb_dim, num_classes, step_conditioned, pose_dim=pose_dim)
        self.inp = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        width = channels[0]
        for c in channels:
            self.down.append(ResBlock(width, c, emb_dim, groups))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            width = c
        self.mid = nn.ModuleList(ResBlock(width, width, emb_dim, groups) for _ in range(2))
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for c in reversed(channels):
            self.upsample.append(_Up(width, c))
            self.up.append(ResBlock(2 * c, c, emb_dim, groups))
            width = c
        self.out = nn.Sequential(
            nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, in_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(
        self, x: Tensor, t: float | Tensor, y: Tensor | None = None, d: float | Tensor | None = None
    ) -> Tensor:
        factor = 2 ** len(self.channels)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % factor or x.shape[3] % factor:
            raise DistillError(
                f"UNet takes (B, {self.in_channels}, H, W) with H and W divisible by {factor}; "
                f"got x of shape {tuple(x.shape)}."
            )
        emb = self.embed(t, x, y, d)
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for upsample, block in zip(self.upsample, self.up):
            h = block(torch.cat([upsample(h), skips.pop()], dim=1), emb)
        return self.out(h)


class _SetBlock(nn.Module):
    """Pre-norm residual block over points ``(B, N, C)``: each point's features, the block's global feature
    (the max over the points, PointNet's symmetric function) concatenated back to every point, then
    h + fc2(SiLU(fc1([LN(h_i), max_j LN(h_j)]) + W·SiLU(emb)))."""

    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.pool = MaxOverPoints()
        self.fc1 = nn.Linear(2 * hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        local = self.norm(h)
        pooled = self.pool(local.transpose(1, 2))[:, None, :].expand_as(local)
        a = self.fc1(torch.cat([local, pooled], dim=2)) + self.emb(F.silu(emb))[:, None, :]
        return h + self.fc2(F.silu(a))


class PointSetNet(nn.Module):
    """Set denoiser for point sets ``(B, N, 3)``: a shared per-point layer, ``depth`` residual blocks that
    concatenate a global max-pooled feature back to every point (PointNet's segmentation network, Qi et al.,
    CVPR 2017), time / class / step from :class:`ConditionEmbedding` added in every block, and a per-point
    output of the velocity (or noise, x0). Every layer acts on each point alone or through the max over all
    of them, so permuting the input points permutes the output the same way (PSF's generator, Wu et al.,
    CVPR 2023, is such a point network, a PVCNN)."""

    def __init__(self, hidden: int = 128, depth: int = 3, num_classes: int = 0, step_conditioned: bool = False,
                 pose_dim: int = 0) -> None:
        super().__init__()
        self.embed = ConditionEmbedding(hidden, num_classes, step_conditioned, pose_dim=pose_dim)
        self.inp = nn.Linear(3, hidden)
        self.blocks = nn.ModuleList(_SetBlock(hidden, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, 3))

    def forward(
        self, x: Tensor, t: float | Tensor, y: Tensor | None = None, d: float | Tensor | None = None
    ) -> Tensor:
        if x.ndim != 3 or x.shape[2] != 3:
            raise DistillError(f"PointSetNet takes point sets (B, N, 3), got x of shape {tuple(x.shape)}.")
        emb = self.embed(t, x, y, d)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


DENOISERS.register("mlp")(TimeMLP)
DENOISERS.register("unet")(UNet)
DENOISERS.register("pointnet")(PointSetNet)

#: constructor arguments that :func:`build_denoiser` derives itself
_DERIVED = {"self", "dim_in", "in_channels", "num_classes", "step_conditioned"}


def build_denoiser(
    name: str, input_shape: Sequence[int], num_classes: int = 0, step_conditioned: bool = False,
    **options,
) -> nn.Module:
    """The denoiser ``name`` ("mlp", "unet" or "pointnet") for inputs of ``input_shape`` (no batch dim).

    ``num_classes > 0`` adds class conditioning with a CFG null class (Ho & Salimans 2022);
    ``step_conditioned`` adds the shortcut step-size input (Frans et al. 2024). ``options``
    are the architecture's own: mlp and pointnet ``hidden``, ``depth``; unet ``channels``, ``groups``; and, for
    any, ``pose_dim`` (a float pose vector as ``y``, e.g. a camera, instead of class labels).
    """
    cls = DENOISERS.get(name)
    accepted = sorted(set(inspect.signature(cls).parameters) - _DERIVED)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DistillError(
            f"denoiser {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted)}."
        )
    try:
        shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        shape = ()
    if not shape or not positive_ints(shape):
        raise DistillError(
            f"denoiser {name!r}: input_shape must be positive sizes without the batch dimension, "
            f"e.g. (2,) or (1, 28, 28); got {input_shape!r}."
        )
    check_int(f"denoiser {name!r}: num_classes (0: unconditional)", num_classes, least=0)
    if name in ("mlp", "pointnet"):
        for key, least in (("hidden", 1), ("depth", 1)):
            check_int(f"denoiser {name!r}: {key}", options.get(key, least), least)
    if name == "mlp":
        return TimeMLP(math.prod(shape), num_classes=num_classes,
                       step_conditioned=step_conditioned, **options)
    if name == "pointnet":
        if len(shape) != 2 or shape[1] != 3:
            raise DistillError(f"denoiser 'pointnet' takes point sets (N, 3), N points of (x, y, z); got input_shape "
                               f"{input_shape!r}. Use 'mlp' for vectors, 'unet' for images.")
        return PointSetNet(num_classes=num_classes, step_conditioned=step_conditioned, **options)
    channels = options.get("channels", (32, 64))
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise DistillError(f"denoiser 'unet': channels must be a list of widths, got {channels!r}.")
    factor = 2 ** len(channels)
    if len(shape) != 3 or shape[1] % factor or shape[2] % factor:
        raise DistillError(
            f"denoiser 'unet' takes images (C, H, W) with H and W divisible by {factor} "
            f"({len(channels)} downsamplings for channels={tuple(channels)}); got input_shape "
            f"{input_shape!r}. Use 'mlp' for vectors."
        )
    return UNet(shape[0], num_classes=num_classes, step_conditioned=step_conditioned, **options)


__all__ = [
    "DENOISERS", "ConditionEmbedding", "PointSetNet", "ResBlock", "TimeMLP", "UNet", "build_denoiser",
    "sinusoidal_embedding",
]
