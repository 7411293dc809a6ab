"""The language family's methods: the token-level losses a recipe's ``method.loss`` names (the classes
of :mod:`distill.losses`, one module each there; ``ce`` trains without a teacher), the cross-tokenizer
losses for a student with its own tokenizer (:mod:`.alignment` pairs its positions with the teacher's,
:mod:`.vocabulary` maps the teacher's tokens for MinED, :mod:`.cross_tokenizer` trains it), the
hidden-state and attention-relation terms of ``method.hidden`` / ``method.relations`` (:mod:`.internals`),
and the cuts of the teacher (:mod:`.prune`).
"""

from distill.losses import LOSSES
from distill.registry import Registry

#: the token-level losses a language recipe can name, in the order the docs list them
TOKEN_LOSSES = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "taid")

#: the losses between a teacher and a student with different tokenizers (ULD, Boizard 2024; MinED, Wan 2024)
CROSS_TOKENIZER_LOSSES = ("uld", "mined")

#: name → token-level or cross-tokenizer loss class (the same classes as in LOSSES)
LANGUAGE_LOSSES = Registry("language loss")
for _name in TOKEN_LOSSES + CROSS_TOKENIZER_LOSSES:
    LANGUAGE_LOSSES.register(_name)(LOSSES.get(_name))

__all__ = ["CROSS_TOKENIZER_LOSSES", "LANGUAGE_LOSSES", "TOKEN_LOSSES"]
