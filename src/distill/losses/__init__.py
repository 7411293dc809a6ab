"""Distillation losses; importing this package registers them all in ``LOSSES``."""

from distill.losses.attention import AttentionTransferLoss
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.crd import CRDLoss
from distill.losses.cross_vocabulary import CrossVocabularyLoss
from distill.losses.dist import DISTLoss
from distill.losses.dkd import DKDLoss
from distill.losses.fitnet import FitNetLoss
from distill.losses.forward_kl import ForwardKLLoss
from distill.losses.functional import masked_cross_entropy, soft_kl
from distill.losses.jsd import GeneralizedJSDLoss
from distill.losses.kd import KDLoss
from distill.losses.logit_standardization import LogitStandardizedKDLoss
from distill.losses.mined import MinEDLoss
from distill.losses.minilm import AttentionRelationLoss
from distill.losses.mmd import MMDLoss
from distill.losses.nst import NSTLoss
from distill.losses.ofa import OFALoss
from distill.losses.pkt import PKTLoss
from distill.losses.pointdistiller import PointDistillerLoss
from distill.losses.reverse_kl import ReverseKLLoss
from distill.losses.review import ReviewKDLoss
from distill.losses.rkd import RKDLoss
from distill.losses.similarity import SimilarityPreservingLoss
from distill.losses.skew_kl import SkewKLLoss
from distill.losses.skew_reverse_kl import SkewReverseKLLoss
from distill.losses.sparse import TopKTargets
from distill.losses.spatial import ChannelWiseLoss, PairwiseAffinityLoss
from distill.losses.taid import TAIDLoss
from distill.losses.token import TokenDistillLoss
from distill.losses.uld import ULDLoss
from distill.losses.vkd import VkDLoss

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "AttentionRelationLoss",
    "AttentionTransferLoss",
    "CRDLoss",
    "ChannelWiseLoss",
    "CrossVocabularyLoss",
    "DISTLoss",
    "DKDLoss",
    "DistillLoss",
    "FitNetLoss",
    "ForwardKLLoss",
    "GeneralizedJSDLoss",
    "KDLoss",
    "LogitStandardizedKDLoss",
    "MMDLoss",
    "MinEDLoss",
    "NSTLoss",
    "OFALoss",
    "PKTLoss",
    "PairwiseAffinityLoss",
    "PointDistillerLoss",
    "RKDLoss",
    "ReverseKLLoss",
    "ReviewKDLoss",
    "SimilarityPreservingLoss",
    "SkewKLLoss",
    "SkewReverseKLLoss",
    "TAIDLoss",
    "TokenDistillLoss",
    "TopKTargets",
    "ULDLoss",
    "VkDLoss",
    "masked_cross_entropy",
    "soft_kl",
]
