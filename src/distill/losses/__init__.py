"""Distillation losses; importing this package registers them all in ``LOSSES``."""

from distill.losses.attention import AttentionTransferLoss
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.dkd import DKDLoss
from distill.losses.fitnet import FitNetLoss
from distill.losses.functional import masked_cross_entropy, soft_kl
from distill.losses.kd import KDLoss
from distill.losses.similarity import SimilarityPreservingLoss

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "AttentionTransferLoss",
    "DKDLoss",
    "DistillLoss",
    "FitNetLoss",
    "KDLoss",
    "SimilarityPreservingLoss",
    "masked_cross_entropy",
    "soft_kl",
]
