"""The score-distillation surrogate shared by DMD and SDS-style guidance."""

from __future__ import annotations

from torch import Tensor


def score_distillation_loss(x: Tensor, grad: Tensor) -> Tensor:
    """``0.5·‖x − sg(x − grad)‖²`` averaged over the batch, summed per sample over its mean:
    its gradient in ``x`` is exactly ``grad / numel_per_sample / batch`` — the way DreamFusion's SDS
    (Poole et al., 2022) and DMD (Yin et al., CVPR 2024) inject an update that is not the gradient of
    any loss the network can see. ``grad`` is treated as a constant."""
    if grad.shape != x.shape:
        raise ValueError(f"score_distillation_loss: grad {tuple(grad.shape)} must have the shape of x {tuple(x.shape)}.")
    target = (x - grad).detach()
    return 0.5 * (x - target).pow(2).flatten(1).mean(dim=1).mean()
