"""Tiny randomly initialised diffusers folders, saved as a user would with ``save_pretrained``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: the scheduler a test folder is saved with: diffusers class and its options
SCHEDULERS = {
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
    "ddim": ("DDIMScheduler", {"clip_sample": False}),
    "flow": ("FlowMatchEulerDiscreteScheduler", {}),
}


def tiny_unet(channels: int = 1, size: int = 8, num_class_embeds: int | None = None, seed: int = 0):
    """A 2-level ``UNet2DModel`` without attention (~40k weights), randomly initialised from ``seed``."""
    import diffusers

    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                 block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=num_class_embeds)


def save_folder(folder: Path, scheduler: str = "ddpm", pipeline: bool = True, channels: int = 1, size: int = 8,
                num_class_embeds: int | None = None, **scheduler_options) -> Path:
    """A tiny UNet and its scheduler in ``folder``: a pipeline's layout (``unet/``, ``scheduler/``) or both
    side by side (``pipeline=False``)."""
    import diffusers

    name, defaults = SCHEDULERS[scheduler]
    unet = tiny_unet(channels, size, num_class_embeds)
    sched = getattr(diffusers, name)(**{**defaults, **scheduler_options})
    if pipeline:  # a pipeline's sub-folders (its model_index.json is not read)
        unet.save_pretrained(Path(folder) / "unet")
        sched.save_pretrained(Path(folder) / "scheduler")
    else:
        unet.save_pretrained(folder)
        sched.save_pretrained(folder)
    return Path(folder)


def edit_config(path: Path, **changes) -> None:
    """Rewrite entries of a saved JSON config (what a hand-edited or foreign folder would hold)."""
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
