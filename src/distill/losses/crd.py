"""Contrastive representation distillation with a memory bank of past embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair
from distill.losses.rkd import sample_vectors


class _Queue(nn.Module):
    """A FIFO bank of the last ``size`` embeddings (a buffer, so it is checkpointed)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, z: torch.Tensor) -> None:
        z = z.detach()[: len(self.bank)]
        rows = (self.head + torch.arange(len(z), device=z.device)) % len(self.bank)
        self.bank[rows] = z.to(self.bank.dtype)
        self.head.copy_((self.head + len(z)) % len(self.bank))


@LOSSES.register("crd")
class CRDLoss(DistillLoss):
    """CRD (Tian, Krishnan & Isola, ICLR 2020, "Contrastive Representation Distillation").

    Student and teacher features are embedded by two trainable linear heads into a
    shared unit sphere; each student embedding must pick its own sample's teacher
    embedding out of the batch's and a memory bank of ``bank_size`` earlier ones
    (and symmetrically), an InfoNCE objective at temperature ``temperature``. The bank
    is a FIFO queue (as in MoCo) rather than the paper's per-sample momentum bank, so
    no sample indices are needed; its negatives are slightly stale, as in MoCo.
    """

    requires = "same_batch"

    def __init__(self, dim: int = 128, temperature: float = 0.07, bank_size: int = 4096) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.embed_student, self.embed_teacher = nn.LazyLinear(dim), nn.LazyLinear(dim)
        self.student_bank, self.teacher_bank = _Queue(bank_size, dim), _Queue(bank_size, dim)

    def _contrast(self, anchor: torch.Tensor, positive: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        in_batch = anchor @ positive.T  # diagonal = positives, the rest = in-batch negatives
        logits = torch.cat([in_batch, anchor @ bank.T], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        check_pair("crd", student, teacher, self.requires, min_dim=2)
        z_s = F.normalize(self.embed_student(sample_vectors(student)), dim=1)
        z_t = F.normalize(self.embed_teacher(sample_vectors(teacher)), dim=1)
        # copies: the banks are updated below, before autograd reads them in the backward pass
        teacher_bank, student_bank = self.teacher_bank.bank.clone(), self.student_bank.bank.clone()
        loss = self._contrast(z_s, z_t, teacher_bank) + self._contrast(z_t, z_s, student_bank)
        if self.training:
            self.teacher_bank.push(z_t)
            self.student_bank.push(z_s)
        return loss
