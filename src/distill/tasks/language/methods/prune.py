"""Students cut from the teacher: depth and width pruning of a Llama-style causal LM.

Depth: the student keeps ``layers`` of the teacher's decoder layers, chosen by a method of
:data:`PRUNERS` — every other layer (DistilBERT, Sanh et al. 2019), the first ``layers − 1`` and the
last, or the layers of highest *block influence* 1 − cos(h_in, h_out), averaged over calibration
tokens (ShortGPT, Men et al. 2024: a layer that barely turns its input is the first to go).

Width (Minitron, Muralidharan et al. 2024): each kept layer keeps its ``intermediate`` MLP channels of
largest mean |act(gate) · up| and its ``heads`` query heads of largest mean output norm (the head's
slice of the input of ``o_proj``), measured on the same calibration tokens. Grouped-query attention is
kept consistent by keeping every key/value head and pruning the same number of query heads inside each
group, so ``heads`` must be a multiple of ``num_key_value_heads``; pruning whole KV groups would rank
groups instead of heads and is not implemented.

The cut is a new model of the teacher's class whose config carries the new ``num_hidden_layers``,
``intermediate_size``, ``num_attention_heads`` (``head_dim`` stays the teacher's) and ``layer_types``;
``save_pretrained`` writes a folder that ``AutoModelForCausalLM.from_pretrained`` loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from distill.errors import ConfigError
from distill.registry import Registry


@dataclass
class ActivationStats:
    """What one pass of the teacher over calibration tokens measured, per decoder layer: block influence
    1 − cos(h_in, h_out) averaged over tokens, mean |MLP intermediate| per channel and mean output norm
    per query head."""

    layers: int
    influence: list[float] = field(default_factory=list)
    channels: list[Tensor] = field(default_factory=list)
    heads: list[Tensor] = field(default_factory=list)


#: name → ``(importance, layers) -> kept layer indices`` (ascending): the depth-pruning methods
PRUNERS: Registry[Callable[[ActivationStats, int], list[int]]] = Registry("pruning method")


@PRUNERS.register("every_other")
def every_other(stats: ActivationStats, layers: int) -> list[int]:
    """Every other layer from the first, 0, 2, 4, … (DistilBERT, Sanh et al. 2019)."""
    even = list(range(0, stats.layers, 2))
    if layers > len(even):
        raise ConfigError(f"student.prune: every_other keeps at most {len(even)} of the teacher's {stats.layers} layers "
                          f"(0, 2, 4, …); {layers} asked")
    return even[:layers]


@PRUNERS.register("first_last")
def first_last(stats: ActivationStats, layers: int) -> list[int]:
    """The first ``layers − 1`` layers and the last one."""
    return list(range(layers - 1)) + [stats.layers - 1] if layers > 1 else [stats.layers - 1]


@PRUNERS.register("block_influence")
def block_influence(stats: ActivationStats, layers: int) -> list[int]:
    """The layers of highest block influence 1 − cos(h_in, h_out) on calibration tokens (ShortGPT, Men et al. 2024)."""
    ranked = sorted(range(stats.layers), key=lambda i: stats.influence[i], reverse=True)
    return sorted(ranked[:layers])


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"student.prune cuts Llama-style causal LMs (model.layers); {type(model).__name__} has none")
    return layers


def _tensor_input(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


def measure(teacher: nn.Module, blocks: Tensor, batch_size: int = 8) -> ActivationStats:
    """Block influence, MLP channel and query-head importance of ``teacher`` on the token ``blocks``."""
    layers = _decoder_layers(teacher)
    config = teacher.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    influence = torch.zeros(len(layers), dtype=torch.float64)
    channels = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    heads = [torch.zeros(config.num_attention_heads, dtype=torch.float64) for _ in layers]
    tokens = 0
    hooks = []

    def on_layer(i: int):
        def hook(module, args, kwargs, output):
            h_in = _tensor_input(args, kwargs).flatten(0, -2).double()
            h_out = (output[0] if isinstance(output, tuple) else output).flatten(0, -2).double()
            influence[i] += (1 - nn.functional.cosine_similarity(h_in, h_out, dim=-1)).sum()
        return hook

    def on_down(i: int):
        def hook(module, args):
            channels[i] += args[0].flatten(0, -2).abs().double().sum(0)
        return hook

    def on_output(i: int):
        def hook(module, args):
            per_head = args[0].flatten(0, -2).unflatten(-1, (config.num_attention_heads, head_dim))
            heads[i] += per_head.double().norm(dim=-1).sum(0)
        return hook

    for i, layer in enumerate(layers):
        hooks += [layer.register_forward_hook(on_layer(i), with_kwargs=True),
                  layer.mlp.down_proj.register_forward_pre_hook(on_down(i)),
                  layer.self_attn.o_proj.register_forward_pre_hook(on_output(i))]
    try:
        with torch.no_grad():
            for start in range(0, len(blocks), batch_size):
                batch = blocks[start:start + batch_size]
                teacher(input_ids=batch)
                tokens += batch.numel()
    finally:
        for hook in hooks:
            hook.remove()
    return ActivationStats(len(layers), (influence / tokens).tolist(), [c / tokens for c in channels],
                           [h / tokens for h in heads])


def check_cut(config, layers: int | None, intermediate: int | None, heads: int | None) -> None:
    """Refuse a cut the teacher's ``config`` cannot give, with the range that it can."""
    n = config.num_hidden_layers
    if layers is not None and not 1 <= layers <= n:
        raise ConfigError(f"student.prune.layers must be between 1 and the teacher's {n} layers, got {layers}")
    if intermediate is not None and not 1 <= intermediate <= config.intermediate_size:
        raise ConfigError(f"student.prune.intermediate must be between 1 and the teacher's intermediate_size "
                          f"{config.intermediate_size}, got {intermediate}")
    if heads is not None:
        total, kv = config.num_attention_heads, config.num_key_value_heads
        if not 1 <= heads <= total or heads % kv:
            raise ConfigError(f"student.prune.heads must be a multiple of the teacher's {kv} key/value heads up to its "
                              f"{total} query heads (every KV head is kept, query heads are pruned within each "
                              f"group), got {heads}")


def _top(scores: Tensor, keep: int) -> Tensor:
    """Indices of the ``keep`` largest ``scores``, in ascending order (so that keeping all is the identity)."""
    return scores.topk(keep).indices.sort().values


def _kept_heads(scores: Tensor, kv_heads: int, keep: int) -> Tensor:
    """Query heads to keep: the ``keep / kv_heads`` best of each key/value group, ascending."""
    group = scores.numel() // kv_heads
    per_group = keep // kv_heads
    return torch.cat([_top(scores[g * group:(g + 1) * group], per_group) + g * group for g in range(kv_heads)])


def _slice(linear: nn.Linear, index: Tensor, dim: int) -> dict[str, Tensor]:
    """``linear``'s weight (and bias, for output rows) restricted to ``index`` along ``dim`` (0: outputs, 1: inputs)."""
    state = {"weight": linear.weight.detach().index_select(dim, index)}
    if linear.bias is not None:
        state["bias"] = linear.bias.detach().index_select(0, index) if dim == 0 else linear.bias.detach()
    return state


def cut(teacher: nn.Module, blocks: Tensor, layers: int | None = None, method: str = "block_influence",
        intermediate: int | None = None, heads: int | None = None) -> nn.Module:
    """A student cut from ``teacher``: ``layers`` decoder layers chosen by the :data:`PRUNERS` ``method``,
    each narrowed to ``intermediate`` MLP channels and ``heads`` query heads (None: keep all), with
    importance measured on the calibration token ``blocks``."""
    config = teacher.config
    check_cut(config, layers, intermediate, heads)
    chooser = PRUNERS.get(method)
    stats = measure(teacher, blocks)
    n = config.num_hidden_layers
    kept = chooser(stats, layers) if layers is not None and layers < n else list(range(n))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    total, kv = config.num_attention_heads, config.num_key_value_heads
    changes = {"num_hidden_layers": len(kept), "head_dim": head_dim,
               "intermediate_size": intermediate or config.intermediate_size, "num_attention_heads": heads or total}
    if getattr(config, "layer_types", None) is not None:
        changes["layer_types"] = [config.layer_types[i] for i in kept]
    student_config = type(config).from_dict({**config.to_dict(), **changes})
    student = type(teacher)(student_config).to(teacher.dtype)

    state = {key: value for key, value in teacher.state_dict().items() if not key.startswith("model.layers.")}
    source_layers = _decoder_layers(teacher)
    for new, old in enumerate(kept):
        layer = source_layers[old]
        prefix = f"model.layers.{new}."
        own = {f"{prefix}{key}": value for key, value in layer.state_dict().items()}
        mlp, attn = layer.mlp, layer.self_attn
        channel_index = _top(stats.channels[old], changes["intermediate_size"])
        for name, dim in (("gate_proj", 0), ("up_proj", 0), ("down_proj", 1)):
            own.update({f"{prefix}mlp.{name}.{k}": v for k, v in _slice(getattr(mlp, name), channel_index, dim).items()})
        head_index = _kept_heads(stats.heads[old], kv, changes["num_attention_heads"])
        rows = (head_index[:, None] * head_dim + torch.arange(head_dim)).flatten()
        for name, dim in (("q_proj", 0), ("o_proj", 1)):
            own.update({f"{prefix}self_attn.{name}.{k}": v for k, v in _slice(getattr(attn, name), rows, dim).items()})
        state.update(own)
    student.load_state_dict(state, strict=True)
    return student


def calibration_blocks(blocks: Tensor, tokens: int) -> Tensor:
    """The first training blocks holding at least ``tokens`` tokens (all of them if there are fewer)."""
    return blocks[:math.ceil(tokens / blocks.shape[1])]


__all__ = ["PRUNERS", "ActivationStats", "calibration_blocks", "check_cut", "cut", "measure"]
