"""The classification family's methods: the distillation losses of :mod:`distill.losses` (logits — KD,
DKD, DIST, LS-KD, OFA —, features — FitNets, AT, NST, ReviewKD, VkD —, relations — RKD, SP, PKT, CRD,
MMD — and dense maps), one registered module each in that shared layer, because the Distiller every
family builds on names them too. A recipe's ``distill.losses`` pairs name them; the token-level losses
there are the language family's methods.
"""

from distill.losses import LOSSES

__all__ = ["LOSSES"]
