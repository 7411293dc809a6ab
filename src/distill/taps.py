"""Capture any intermediate tensor of any model by its module path, without editing it.

A tap is written ``"layer3.1.conv2"`` (that module's output), ``"layer3.1.conv2:input"``
(its first positional input) or ``"...:output[0]"`` (one element of a tuple output).
``"output"`` and ``"input"`` alone mean the whole model's output and input. Hooks are
module-level functions bound with ``functools.partial`` so wrapped models pickle
under DDP (as in NVIDIA ModelOpt and mmrazor's recorders).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from distill.errors import DistillError, closest

_TAP_PATTERN = re.compile(r"^(?P<path>[A-Za-z0-9_.]*?)(?::(?P<io>input|output))?(?:\[(?P<index>\d+)\])?$")


@dataclass(frozen=True)
class TapSpec:
    """Where a tensor comes from: a module path, its input or output, an optional tuple index."""

    path: str
    io: Literal["input", "output"] = "output"
    index: int | None = None

    def __str__(self) -> str:
        text = self.path or self.io
        if self.path and self.io == "input":
            text += ":input"
        return text + (f"[{self.index}]" if self.index is not None else "")


def parse_tap(spec: str) -> TapSpec:
    """Parse ``"path[:input|:output][[i]]"``; ``"output"``/``"input"`` alone mean the root model."""
    if not isinstance(spec, str):
        raise DistillError(f"a tap must be a string such as 'layer3.1.conv2' or 'output', got {spec!r}.")
    match = _TAP_PATTERN.match(spec.strip())
    if match is None:
        raise DistillError(
            f"cannot parse tap {spec!r}: write a module path, optionally followed by ':input' or "
            "':output' and a tuple index like '[0]', e.g. 'layer3.1.conv2:output'."
        )
    path, io, index = match["path"], match["io"] or "output", match["index"]
    if path in ("input", "output") and match["io"] is None:
        path, io = "", path
    return TapSpec(path=path, io=io, index=int(index) if index is not None else None)


def module_paths(model: nn.Module) -> list[str]:
    """Every tappable module path of ``model`` ("" is the model itself)."""
    return [name for name, _ in model.named_modules()]


def resolve_module(model: nn.Module, path: str, role: str = "model") -> nn.Module:
    """The submodule at ``path``; a wrong path names the closest real ones."""
    modules = dict(model.named_modules())
    if path in modules:
        return modules[path]
    suggestions = closest(path, [p for p in modules if p], n=5)
    listing = ", ".join(repr(p) for p in suggestions) or ", ".join(repr(p) for p in list(modules)[1:8])
    raise DistillError(
        f"the {role} ({type(model).__name__}) has no module {path!r}. Closest paths: {listing}. "
        "Use 'output' for the model's final output; `distill.taps.module_paths(model)` lists all."
    )


def _select(value: Any, spec: TapSpec) -> Any:
    if spec.index is not None:
        return value[spec.index]
    return value


def _record_output(store: dict, key: TapSpec, module: nn.Module, args: tuple, output: Any) -> None:
    store[key] = _select(output, key)


def _record_input(store: dict, key: TapSpec, module: nn.Module, args: tuple) -> None:
    if not args:
        raise DistillError(f"tap {key} asks for the input of a module called without positional inputs.")
    store[key] = _select(args[0], key)


class TapRecorder:
    """Forward hooks on one model that store the tapped tensors of the latest forward pass."""

    def __init__(self, model: nn.Module, specs: list[TapSpec], role: str = "model") -> None:
        self.role = role
        self.store: dict[TapSpec, Any] = {}
        self._handles = []
        for spec in dict.fromkeys(specs):
            module = resolve_module(model, spec.path, role)
            if spec.io == "output":
                hook = functools.partial(_record_output, self.store, spec)
                self._handles.append(module.register_forward_hook(hook))
            else:
                hook = functools.partial(_record_input, self.store, spec)
                self._handles.append(module.register_forward_pre_hook(hook))

    def clear(self) -> None:
        """Forget the tensors of the previous forward pass."""
        self.store.clear()

    def get(self, spec: TapSpec) -> torch.Tensor:
        """The tensor captured for ``spec`` in the latest forward pass."""
        if spec not in self.store:
            raise DistillError(
                f"tap {spec} of the {self.role} captured nothing: that module did not run in the "
                "last forward pass (is it used by forward()?), or no forward pass happened yet."
            )
        value = self.store[spec]
        if not isinstance(value, torch.Tensor):
            raise DistillError(
                f"tap {spec} of the {self.role} captured a {type(value).__name__}, not a tensor; "
                f"add a tuple index such as '{spec}[0]' or tap a submodule that returns a tensor."
            )
        return value

    def remove(self) -> None:
        """Detach all hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.store.clear()
