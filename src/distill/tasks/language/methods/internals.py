"""Matching a language model's insides: hidden states through projectors, and self-attention relations.

For students whose width differs from the teacher's. Each is one multi-level pair of a
:class:`~distill.distiller.Distiller` — the taps name the modules whose outputs a Llama-family
causal LM returns as ``hidden_states``, or its q/k/v projections — so the Distiller captures the
tensors, runs the teacher once, applies the mask and weighs the terms. Both need the live
teacher: a top-k cache holds output distributions only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from distill.adapters import build_adapters
from distill.distiller import Match
from distill.errors import ConfigError
from distill.losses import DistillLoss
from distill.losses.functional import masked_mean
from distill.losses.minilm import AttentionRelationLoss
from distill.taps import resolve_module
from distill.tasks.language.recipe import LanguageRecipe

#: the projections whose relations MiniLMv2 matches: queries, keys, values (before rotary embeddings)
RELATION_KINDS = ("q_proj", "k_proj", "v_proj")


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``(i, round(i · teacher_layers / student_layers))`` for every student layer ``i`` ≥ 1, indices into
    ``hidden_states`` (0 is the embeddings): TinyBERT's uniform mapping (Jiao et al., 2020)."""
    return [(i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


def hidden_state_taps(layers: int) -> tuple[str, ...]:
    """The taps of a Llama-family causal LM's ``hidden_states``, in order: the token embeddings, the output of
    every decoder layer but the last, and the final norm (which ``hidden_states[-1]`` holds)."""
    return ("model.embed_tokens", *(f"model.layers.{i}" for i in range(layers - 1)), "model.norm")


def _layer_index(value: int, count: int, what: str) -> int:
    """``value`` as an index in ``0..count-1`` (negative counts from the end), or a ConfigError naming ``what``."""
    if not -count <= value < count:
        raise ConfigError(f"{what} {value} is out of range: that model has {count} (use 0..{count - 1}, or -1 for the last).")
    return value % count


class HiddenStateMatching(DistillLoss):
    """Hidden-state regression (FitNets, Romero et al., ICLR 2015; TinyBERT's hidden loss, Jiao et al., 2020).

    Each ``(student, teacher)`` pair indexes the models' ``hidden_states``; the student's state is
    projected onto the teacher's width by the adapter ``distill.adapters`` builds, and regressed
    (mean squared error, over the positions ``mask`` keeps) onto the teacher's state normalised per
    token (a layer norm without parameters): the residual stream of a pretrained LM has a few huge
    activations (SmolLM2's middle layers reach 2·10⁴) that would otherwise be all the loss sees.
    The pairs' terms are averaged. Tapped as ``hidden_state_taps`` of each model.
    """

    requires = "multi_level"
    supports_mask = True

    def __init__(self, pairs: list[tuple[int, int]], student_config, teacher_config, length: int) -> None:
        super().__init__()
        self.pairs = [(_layer_index(s, student_config.num_hidden_layers + 1, "method.hidden student layer"),
                       _layer_index(t, teacher_config.num_hidden_layers + 1, "method.hidden teacher layer"))
                      for s, t in pairs]
        widths = (student_config.hidden_size, teacher_config.hidden_size)
        self.adapters = nn.ModuleList(
            build_adapters((1, length, widths[0]), (1, length, widths[1]), "same_shape", f"hidden states {s} → {t}",
                           "tokens", "tokens")[0] for s, t in self.pairs)
        self.taps = (hidden_state_taps(student_config.num_hidden_layers),
                     hidden_state_taps(teacher_config.num_hidden_layers))

    def forward(self, student_hidden: tuple[Tensor, ...], teacher_hidden: tuple[Tensor, ...],
                target: Tensor | None = None, *, mask: Tensor | None = None) -> Tensor:
        terms = []
        for adapter, (s, t) in zip(self.adapters, self.pairs):
            teacher = F.layer_norm(teacher_hidden[t].float(), teacher_hidden[t].shape[-1:])
            errors = (adapter(student_hidden[s]).float() - teacher).pow(2).mean(dim=-1)  # (B, L)
            terms.append(errors.mean() if mask is None else masked_mean(errors, mask))
        return sum(terms) / len(terms)


class RelationMatching(DistillLoss):
    """MiniLMv2's query–query, key–key and value–value relations of one student layer against one teacher
    layer (Wang et al., 2021), summed; tapped at ``self_attn.{q,k,v}_proj`` of each (``taps``)."""

    requires = "multi_level"
    supports_mask = True

    def __init__(self, student: nn.Module, teacher: nn.Module, student_layer: int, teacher_layer: int,
                 heads: int) -> None:
        super().__init__()
        layers = (_layer_index(student_layer, student.config.num_hidden_layers, "method.relations.student_layer"),
                  _layer_index(teacher_layer, teacher.config.num_hidden_layers, "method.relations.teacher_layer"))
        self.taps = tuple(tuple(f"model.layers.{layer}.self_attn.{kind}" for kind in RELATION_KINDS) for layer in layers)
        for model, paths, role in ((student, self.taps[0], "student"), (teacher, self.taps[1], "teacher")):
            for path in paths:
                width = resolve_module(model, path, role).out_features
                if width % heads:
                    raise ConfigError(f"method.relations.heads={heads} does not divide the {role}'s {path} width "
                                      f"{width}; pick a number of relation heads dividing every q/k/v width of both models.")
        self.loss = AttentionRelationLoss(heads)

    def forward(self, student_qkv: list[Tensor], teacher_qkv: list[Tensor], target: Tensor | None = None, *,
                mask: Tensor | None = None) -> Tensor:
        return sum(self.loss(s, t, mask=mask) for s, t in zip(student_qkv, teacher_qkv))


class InternalMatching:
    """The hidden-state and relation terms of a language objective and their weights, as the Distiller pairs
    :meth:`pairs` (named ``"hidden"`` and ``"relations"``)."""

    def __init__(self, hidden: HiddenStateMatching | None = None, hidden_weight: float = 1.0,
                 relations: RelationMatching | None = None, relations_weight: float = 1.0) -> None:
        if hidden is None and relations is None:
            raise ConfigError("internal matching needs hidden-state pairs, relations, or both.")
        self.hidden, self.relations = hidden, relations
        self.weights = {"hidden": hidden_weight, "relations": relations_weight}

    def pairs(self) -> dict[tuple[tuple[str, ...], tuple[str, ...]], Match]:
        """``{(student taps, teacher taps): Match}`` for :class:`~distill.distiller.Distiller`."""
        terms = {"hidden": self.hidden, "relations": self.relations}
        return {term.taps: Match(term, self.weights[name], name=name) for name, term in terms.items() if term is not None}


def internal_matching(recipe: LanguageRecipe, student: nn.Module, teacher: nn.Module) -> InternalMatching | None:
    """The recipe's hidden-state and relation terms, or None; bad layers or relation heads fail here, before training."""
    hidden, relations = recipe.method.hidden, recipe.method.relations
    if hidden is None and relations is None:
        return None
    hidden_states = attention = None
    if hidden is not None:
        pairs = hidden.layers or uniform_layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
        hidden_states = HiddenStateMatching(pairs, student.config, teacher.config, recipe.data.block_length)
    if relations is not None:
        attention = RelationMatching(student, teacher, relations.student_layer, relations.teacher_layer, relations.heads)
    return InternalMatching(hidden_states, hidden.weight if hidden else 1.0, attention,
                            relations.weight if relations else 1.0)
