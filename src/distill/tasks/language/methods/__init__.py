"""The language family's methods: the token-level losses a recipe's ``method.loss`` names (the classes
of :mod:`distill.losses`, one module each there; ``ce`` trains without a teacher), and the
hidden-state and attention-relation terms of ``method.hidden`` / ``method.relations`` (:mod:`.internals`).
"""

from distill.losses import LOSSES
from distill.registry import Registry

#: the token-level losses a language recipe can name, in the order the docs list them
TOKEN_LOSSES = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "taid")

#: name → token-level loss class (the same classes as in LOSSES)
LANGUAGE_LOSSES = Registry("language loss")
for _name in TOKEN_LOSSES:
    LANGUAGE_LOSSES.register(_name)(LOSSES.get(_name))

__all__ = ["LANGUAGE_LOSSES", "TOKEN_LOSSES"]
