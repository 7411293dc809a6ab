"""Matching a language model's insides: hidden states through projectors, and self-attention relations.

For students whose width differs from the teacher's. Both need the live teacher: a top-k
cache holds output distributions only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from distill.adapters import build_adapters
from distill.errors import ConfigError
from distill.losses import LOSSES
from distill.losses.minilm import AttentionRelationLoss
from distill.taps import TapRecorder, parse_tap, resolve_module

#: the projections whose relations MiniLMv2 matches: queries, keys, values (before rotary embeddings)
RELATION_KINDS = ("q_proj", "k_proj", "v_proj")


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``(i, round(i · teacher_layers / student_layers))`` for every student layer ``i`` ≥ 1, indices into
    ``hidden_states`` (0 is the embeddings): TinyBERT's uniform mapping (Jiao et al., 2020)."""
    return [(i, round(i * teacher_layers / student_layers)) for i in range(1, student_layers + 1)]


def _layer_index(value: int, count: int, what: str) -> int:
    """``value`` as an index in ``0..count-1`` (negative counts from the end), or a ConfigError naming ``what``."""
    if not -count <= value < count:
        raise ConfigError(f"{what} {value} is out of range: that model has {count} (use 0..{count - 1}, or -1 for the last).")
    return value % count


class HiddenStateMatching(nn.Module):
    """Hidden-state regression (FitNets, Romero et al., ICLR 2015; TinyBERT's hidden loss, Jiao et al., 2020).

    Each ``(student, teacher)`` pair indexes the models' ``hidden_states``; the student's state is
    projected onto the teacher's width by the adapter ``distill.adapters`` builds, and regressed
    (mean squared error) onto the teacher's state normalised per token (a layer norm without
    parameters): the residual stream of a pretrained LM has a few huge activations (SmolLM2's
    middle layers reach 2·10⁴) that would otherwise be all the loss sees.
    """

    def __init__(self, pairs: list[tuple[int, int]], student_config, teacher_config, length: int) -> None:
        super().__init__()
        self.pairs = [(_layer_index(s, student_config.num_hidden_layers + 1, "method.hidden student layer"),
                       _layer_index(t, teacher_config.num_hidden_layers + 1, "method.hidden teacher layer"))
                      for s, t in pairs]
        widths = (student_config.hidden_size, teacher_config.hidden_size)
        self.adapters = nn.ModuleList(
            build_adapters((1, length, widths[0]), (1, length, widths[1]), "same_shape", f"hidden states {s} → {t}",
                           "tokens", "tokens")[0] for s, t in self.pairs)
        self.loss = LOSSES.build("fitnet")

    def forward(self, student_hidden: tuple[Tensor, ...], teacher_hidden: tuple[Tensor, ...]) -> Tensor:
        terms = [self.loss(adapter(student_hidden[s]), F.layer_norm(teacher_hidden[t].float(), teacher_hidden[t].shape[-1:]))
                 for adapter, (s, t) in zip(self.adapters, self.pairs)]
        return sum(terms) / len(terms)


class RelationMatching(nn.Module):
    """MiniLMv2's query–query, key–key and value–value relations of one student layer against one teacher
    layer (Wang et al., 2021), summed; the projections are read by forward hooks on ``self_attn.{q,k,v}_proj``."""

    def __init__(self, student: nn.Module, teacher: nn.Module, student_layer: int, teacher_layer: int,
                 heads: int) -> None:
        super().__init__()
        layers = (_layer_index(student_layer, student.config.num_hidden_layers, "method.relations.student_layer"),
                  _layer_index(teacher_layer, teacher.config.num_hidden_layers, "method.relations.teacher_layer"))
        self.specs = [[parse_tap(f"model.layers.{layer}.self_attn.{kind}") for kind in RELATION_KINDS] for layer in layers]
        for model, specs, role in ((student, self.specs[0], "student"), (teacher, self.specs[1], "teacher")):
            for spec in specs:
                width = resolve_module(model, spec.path, role).out_features
                if width % heads:
                    raise ConfigError(f"method.relations.heads={heads} does not divide the {role}'s {spec.path} width "
                                      f"{width}; pick a number of relation heads dividing every q/k/v width of both models.")
        self.loss = AttentionRelationLoss(heads)
        # plain attributes, not submodules: the models belong to the objective
        self.taps = (TapRecorder(student, self.specs[0], "student"), TapRecorder(teacher, self.specs[1], "teacher"))

    def forward(self, mask: Tensor) -> Tensor:
        student_taps, teacher_taps = self.taps
        return sum(self.loss(student_taps.get(s), teacher_taps.get(t), mask=mask) for s, t in zip(*self.specs))


class InternalMatching(nn.Module):
    """The weighted hidden-state and relation terms of one batch: ``forward(student_out, teacher_out, mask)``
    returns ``{"hidden": …, "relations": …}`` (the terms configured), already weighted."""

    def __init__(self, hidden: HiddenStateMatching | None = None, hidden_weight: float = 1.0,
                 relations: RelationMatching | None = None, relations_weight: float = 1.0) -> None:
        super().__init__()
        if hidden is None and relations is None:
            raise ConfigError("internal matching needs hidden-state pairs, relations, or both.")
        self.hidden, self.relations = hidden, relations
        self.weights = {"hidden": hidden_weight, "relations": relations_weight}

    @property
    def needs_hidden_states(self) -> bool:
        return self.hidden is not None

    def forward(self, student_out, teacher_out, mask: Tensor) -> dict[str, Tensor]:
        terms = {}
        if self.hidden is not None:
            terms["hidden"] = self.weights["hidden"] * self.hidden(student_out.hidden_states, teacher_out.hidden_states)
        if self.relations is not None:
            terms["relations"] = self.weights["relations"] * self.relations(mask)
        return terms
