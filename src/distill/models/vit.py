"""A tiny Vision Transformer (Dosovitskiy et al. 2021, "An image is worth 16x16 words").

Patches → linear embedding (a strided conv), a class token and learned position
embeddings, pre-norm transformer blocks, a final LayerNorm, and a linear head on
the class token. Much smaller than timm's ViT-Ti: dim 64, depth 4, 4 heads.

Module paths (taps), for N patches of dimension D: ``patch_embed`` (B, D, H/p, W/p),
``blocks.i`` (B, N+1, D) tokens, ``blocks.i.attn``/``blocks.i.mlp`` their residual
branches, ``norm`` (B, N+1, D), ``head`` (its input is the (B, D) class token, token 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.errors import DistillError, positive_ints
from distill.models.base import MODELS
from distill.models.convnet import IMAGES_ONLY, checked_shape


class Attention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017) over (B, N, D) tokens."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT classifier for (C, H, W) images split into ``patch_size``² patches."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        patch_size: int,
        depth: int,
        dim: int,
        heads: int,
        mlp_ratio: int,
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        num_patches = (height // patch_size) * (width // patch_size)
        self.patch_embed = nn.Conv2d(channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0])


@MODELS.register("vit_tiny")
def vit_tiny(
    input_shape: Sequence[int],
    num_classes: int,
    patch_size: int | None = None,
    depth: int = 4,
    dim: int = 64,
    heads: int = 4,
    mlp_ratio: int = 4,
) -> nn.Module:
    """Tiny Vision Transformer (Dosovitskiy et al. 2021): dim 64, depth 4, 4 heads.

    ``patch_size`` defaults to 4 for images of 16 px or more a side (28×28 → 7×7
    patches), else 2 (8×8 → 4×4 patches); it must divide both sides.
    """
    shape = checked_shape("vit_tiny", input_shape, num_classes, {3: "(C, H, W)"}, IMAGES_ONLY)
    patch = patch_size if patch_size is not None else (4 if min(shape[1:]) >= 16 else 2)
    if not positive_ints([patch, depth, dim, heads, mlp_ratio]):
        raise DistillError(
            "vit_tiny: patch_size, depth, dim, heads and mlp_ratio must be positive integers; got "
            f"{patch}, {depth}, {dim}, {heads}, {mlp_ratio}."
        )
    if shape[1] % patch or shape[2] % patch:
        raise DistillError(
            f"vit_tiny: image size {shape[1]}×{shape[2]} is not divisible by patch_size={patch}; "
            "pass a patch_size that divides both sides, or resize the images."
        )
    if dim % heads:
        raise DistillError(f"vit_tiny: dim={dim} must be divisible by heads={heads}.")
    return VisionTransformer(shape, num_classes, patch, depth, dim, heads, mlp_ratio)
