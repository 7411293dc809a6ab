"""Dataset distillation: condense a real training set into a few synthetic images per class."""

from distill.tasks.dataset.condense import build_network, condense
from distill.tasks.dataset.methods import CONDENSERS
from distill.tasks.dataset.metrics import evaluate_set
from distill.tasks.dataset.synthetic import SyntheticSet

__all__ = ["CONDENSERS", "SyntheticSet", "build_network", "condense", "evaluate_set"]
