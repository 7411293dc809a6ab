"""Small denoiser networks shared by the step-method tests."""

from __future__ import annotations

import torch
from torch import nn

from distill.diffusion.nets import build_denoiser


def perturbed_mlp(seed: int = 0, num_classes: int = 0, step_conditioned: bool = False, perturb: bool = True,
                  hidden: int = 16, depth: int = 1) -> nn.Module:
    """A tiny 2-D MLP denoiser; ``perturb`` gives every weight N(0, 0.3), so outputs (and conditional vs
    unconditional ones) differ by far more than at initialisation."""
    torch.manual_seed(seed)
    net = build_denoiser("mlp", (2,), num_classes, step_conditioned, hidden=hidden, depth=depth)
    if perturb:
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.3)
    return net
