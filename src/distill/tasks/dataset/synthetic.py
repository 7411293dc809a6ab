"""The two sets a condensation method works between: the real images grouped by class, and the synthetic set it learns."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from distill.engine.cache import array_hash
from distill.engine.checkpoint import load_weights_file
from distill.errors import ConfigError


class ClassBank:
    """Real training images grouped by class, for drawing class-balanced batches.

    ``images`` is ``(N, C, H, W)``, ``labels`` ``(N,)`` with values in ``0..num_classes-1``;
    every class must have at least one image.
    """

    def __init__(self, images: Tensor, labels: Tensor, num_classes: int) -> None:
        if images.dim() != 4 or labels.shape != (images.shape[0],):
            raise ConfigError(f"a class bank needs images (N, C, H, W) and labels (N,); got {tuple(images.shape)} "
                              f"and {tuple(labels.shape)}.")
        labels = labels.long()
        counts = torch.bincount(labels, minlength=num_classes)
        if len(counts) > num_classes or (counts == 0).any():
            missing = [c for c in range(num_classes) if c >= len(counts) or counts[c] == 0]
            raise ConfigError(f"every class 0..{num_classes - 1} needs real images; missing or out of range: "
                              f"{missing or sorted(set(labels.tolist()) - set(range(num_classes)))}.")
        self.images, self.labels, self.num_classes = images.float(), labels, num_classes
        self.indices = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the images and labels: what a stage made from this bank is stored under."""
        return array_hash(self.images, self.labels)

    def sample(self, label: int, n: int, generator: torch.Generator) -> Tensor:
        """``n`` images of class ``label`` drawn without replacement (all of them if the class has fewer)."""
        pool = self.indices[label]
        pick = pool[torch.randperm(len(pool), generator=generator)[:n]]
        return self.images[pick]

    def stacked(self, n: int, generator: torch.Generator) -> Tensor:
        """``(num_classes, n, C, H, W)``: ``n`` images of every class (classes need ``n`` images each)."""
        return torch.stack([self.sample(c, n, generator) for c in range(self.num_classes)])


class SyntheticSet(nn.Module):
    """The learned set: ``ipc`` images per class, ordered by class, as one trainable tensor.

    ``images`` is ``(num_classes * ipc, C, H, W)``; ``labels`` the hard labels
    ``[0]*ipc + [1]*ipc + …``. ``soft_labels`` (logits, optional, trainable) are what
    soft-label methods learn; they are reported separately from hard-label results.
    """

    def __init__(self, images: Tensor, num_classes: int, soft_labels: Tensor | None = None) -> None:
        super().__init__()
        if images.dim() != 4 or images.shape[0] % num_classes:
            raise ConfigError(f"synthetic images must be (num_classes * ipc, C, H, W); got {tuple(images.shape)} "
                              f"for {num_classes} classes.")
        self.num_classes, self.ipc = num_classes, images.shape[0] // num_classes
        self.images = nn.Parameter(images.detach().clone().float())
        self.register_buffer("labels", torch.arange(num_classes).repeat_interleave(self.ipc))
        self.soft_labels = None if soft_labels is None else nn.Parameter(soft_labels.detach().clone().float())

    @classmethod
    def from_real(cls, bank: ClassBank, ipc: int, generator: torch.Generator) -> SyntheticSet:
        """Initialised with ``ipc`` randomly chosen real images of each class (as DC, DM and MTT start)."""
        if any(len(pool) < ipc for pool in bank.indices):
            raise ConfigError(f"ipc={ipc} needs {ipc} real images of every class; the smallest class has "
                              f"{min(len(p) for p in bank.indices)}. Lower ipc or use init: noise.")
        return cls(torch.cat([bank.sample(c, ipc, generator) for c in range(bank.num_classes)]), bank.num_classes)

    @classmethod
    def from_noise(cls, bank: ClassBank, ipc: int, generator: torch.Generator) -> SyntheticSet:
        """Initialised with standard Gaussian noise (the images are normalised, so noise has the data's scale)."""
        shape = (bank.num_classes * ipc, *bank.image_shape)
        return cls(torch.randn(shape, generator=generator), bank.num_classes)

    def per_class(self) -> Tensor:
        """``(num_classes, ipc, C, H, W)``, a view of ``images`` (gradients flow)."""
        return self.images.view(self.num_classes, self.ipc, *self.images.shape[1:])

    def save(self, path: Path) -> Path:
        """Images and labels as ``.safetensors`` (soft labels too, when learned)."""
        tensors = {"images": self.images.detach().contiguous(), "labels": self.labels}
        if self.soft_labels is not None:
            tensors["soft_labels"] = self.soft_labels.detach().contiguous()
        save_file(tensors, str(path), metadata={"num_classes": str(self.num_classes), "ipc": str(self.ipc)})
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> SyntheticSet:
        """A set written by ``save``; an unreadable file, or one without ``images`` and ``labels``, is refused."""
        tensors = load_weights_file(path)
        if "images" not in tensors or "labels" not in tensors:
            raise ConfigError(f"{path} is not a synthetic set (needs 'images' and 'labels' tensors); write one with "
                              "SyntheticSet.save or distill run.")
        num_classes = int(tensors["labels"].max()) + 1
        return cls(tensors["images"], num_classes, tensors.get("soft_labels"))
