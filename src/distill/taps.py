"""Capture any intermediate tensor of any model by its module path, without editing it.

A tap is written ``"layer3.1.conv2"`` (that module's output), ``"layer3.1.conv2:input"``
(its first positional input), ``"rnn:output[0]"`` (one element of a tuple output) or
``"encoder[last_hidden_state]"`` (one entry of a dict output, e.g. a Hugging Face
``ModelOutput``). ``"output"`` and ``"input"`` alone mean the whole model's output and
input, so ``"output[logits]"`` is the logits of a model returning a dict. Hooks are
module-level functions bound with ``functools.partial`` so wrapped models pickle
under DDP (as in NVIDIA ModelOpt and mmrazor's recorders).
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from distill.errors import DistillError, closest

_TAP_PATTERN = re.compile(
    r"^(?P<path>[A-Za-z0-9_.]*?)(?::(?P<io>input|output))?(?:\[(?P<index>\d+|[A-Za-z_][\w.\-]*)\])?$"
)


@dataclass(frozen=True)
class TapSpec:
    """Where a tensor comes from: a module path, its input or output, an optional index or key.

    ``index`` is an ``int`` for an element of a tuple/list, a ``str`` for an entry of a dict.
    """

    path: str
    io: Literal["input", "output"] = "output"
    index: int | str | None = None

    def __str__(self) -> str:
        text = self.path or self.io
        if self.path and self.io == "input":
            text += ":input"
        return text + (f"[{self.index}]" if self.index is not None else "")


def parse_tap(spec: str) -> TapSpec:
    """Parse ``"path[:input|:output][[i]|[key]]"``; ``"output"``/``"input"`` alone mean the root model."""
    if not isinstance(spec, str):
        raise DistillError(f"a tap must be a string such as 'layer3.1.conv2' or 'output', got {spec!r}.")
    match = _TAP_PATTERN.match(spec.strip())
    if match is None:
        raise DistillError(
            f"cannot parse tap {spec!r}: write a module path, optionally followed by ':input' or "
            "':output' and a tuple index like '[0]' or a dict key like '[logits]', "
            "e.g. 'layer3.1.conv2:output' or 'output[logits]'."
        )
    path, io, index = match["path"], match["io"] or "output", match["index"]
    if path in ("input", "output") and match["io"] is None:
        path, io = "", path
    if index is not None and index.isdigit():
        index = int(index)
    return TapSpec(path=path, io=io, index=index)


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


def _never_runs(module: nn.Module) -> bool:
    """True for a container without ``forward`` (``ModuleList``, ``ModuleDict``): hooks on it never fire."""
    return type(module).forward is nn.Module.forward


def _check_runs(module: nn.Module, spec: TapSpec, role: str) -> None:
    """Refuse a tap on a container that is never called, naming the module path the user meant."""
    if not _never_runs(module):
        return
    children = [name for name, _ in module.named_children()]
    if spec.index is not None and str(spec.index) in children:
        path = f"{spec.path}.{spec.index}"
        fix = f"tap that module by its path, {path!r}"
    else:
        path = f"{spec.path}.{children[0] if children else 0}"
        fix = f"tap one of its modules by path, e.g. {path!r}"
    raise DistillError(
        f"tap {spec} of the {role}: {spec.path!r} is a {type(module).__name__}, a container that never runs "
        f"(forward() calls its modules one by one), so it has no {spec.io}; {fix}."
    )


def _child_path(module: nn.Module, spec: TapSpec) -> str | None:
    """``"seq.0"`` for a tap ``"seq[0]"`` on a module that has a child named by the index, else None."""
    if spec.index is None or not spec.path:
        return None
    return f"{spec.path}.{spec.index}" if str(spec.index) in dict(module.named_children()) else None


def _keys(mapping: Mapping) -> str:
    return ", ".join(repr(k) for k in mapping)


def _select(value: Any, spec: TapSpec, role: str, child_path: str | None = None) -> Any:
    """The element or entry of ``value`` that ``spec.index`` names; a wrong one lists what exists.
    ``child_path``: the module path the index may have meant (``"seq.0"`` for ``"seq[0]"``)."""
    if spec.index is None:
        return value
    whole = TapSpec(spec.path, spec.io)
    if isinstance(value, Mapping):
        if spec.index not in value:
            raise DistillError(
                f"tap {spec} of the {role}: the captured {type(value).__name__} has no key {spec.index!r}; "
                f"its keys are {_keys(value)}, e.g. '{whole}[{next(iter(value), 'key')}]'."
            )
        return value[spec.index]
    if isinstance(value, (tuple, list)):
        if not isinstance(spec.index, int) or spec.index >= len(value):
            raise DistillError(
                f"tap {spec} of the {role}: the captured {type(value).__name__} has {len(value)} elements; "
                f"index it by position, e.g. '{whole}[0]'."
            )
        return value[spec.index]
    what = "tensor" if isinstance(value, torch.Tensor) else type(value).__name__
    module = f" or {child_path!r} for the output of its module {spec.index!r}" if child_path else ""
    raise DistillError(
        f"tap {spec} of the {role} captured a {what}, which has no elements to pick; write {str(whole)!r} "
        f"without the index{module}."
    )


def _not_a_tensor(spec: TapSpec, value: Any, role: str) -> DistillError:
    if spec.index is None and isinstance(value, Mapping):
        fix = f"its keys are {_keys(value)}; pick one, e.g. '{spec}[{next(iter(value), 'key')}]'."
    elif spec.index is None and isinstance(value, (tuple, list)):
        fix = f"pick an element, e.g. '{spec}[0]'."
    else:
        fix = "tap the submodule that returns the tensor (a tap takes one index or key)."
    return DistillError(f"tap {spec} of the {role} captured a {type(value).__name__}, not a tensor; {fix}")


def _record_output(store: dict, key: TapSpec, module: nn.Module, args: tuple, output: Any) -> None:
    store[key] = output


def _record_input(store: dict, key: TapSpec, module: nn.Module, args: tuple) -> None:
    if not args:
        raise DistillError(
            f"tap {key} asks for the first positional input of a module called with keyword arguments only; "
            "tap the output of the module that produces that input, or of the one that reads it, instead."
        )
    store[key] = args[0]


class _Store(dict):
    """The tensors of the latest forward pass. A copy (deepcopy, pickle) starts empty: the copied hooks
    record the copy's own tensors, and activations with autograd history are never copied."""

    def __deepcopy__(self, memo: dict) -> _Store:
        return type(self)()

    def __reduce__(self):
        return type(self), ()


class TapRecorder:
    """Forward hooks on one model that store the tapped values of the latest forward pass.

    The hooks store what the module saw or returned; picking an element or key happens in
    :meth:`get`, so a wrong index is reported there instead of breaking the model's forward.
    If a spec does not resolve, the hooks already placed are removed before the error; a tap on
    a container that never runs (``ModuleList``) is refused. The hooks also go when the recorder
    is garbage-collected (a ``weakref.finalize`` holding only the handles and the store), so a
    dropped Distiller leaves nothing on the user's models.
    """

    def __init__(self, model: nn.Module, specs: list[TapSpec], role: str = "model") -> None:
        self.role = role
        self.store: dict[TapSpec, Any] = _Store()
        self._handles = []
        self._child_paths: dict[TapSpec, str | None] = {}
        self._arm()
        try:
            for spec in dict.fromkeys(specs):
                module = resolve_module(model, spec.path, role)
                _check_runs(module, spec, role)
                self._child_paths[spec] = _child_path(module, spec)
                if spec.io == "output":
                    hook = functools.partial(_record_output, self.store, spec)
                    self._handles.append(module.register_forward_hook(hook))
                else:
                    hook = functools.partial(_record_input, self.store, spec)
                    self._handles.append(module.register_forward_pre_hook(hook))
        except Exception:
            self.remove()
            raise

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
        value = _select(self.store[spec], spec, self.role, self._child_paths.get(spec))
        if not isinstance(value, torch.Tensor):
            raise _not_a_tensor(spec, value, self.role)
        return value

    def remove(self) -> None:
        """Detach all hooks from the model."""
        _remove_hooks(self._handles, self.store)

    def _arm(self) -> None:
        weakref.finalize(self, _remove_hooks, self._handles, self.store)

    def __setstate__(self, state: dict) -> None:
        """A copy (deepcopy, pickle) removes its own hooks when it is collected, as the original does."""
        self.__dict__.update(state)
        self._arm()


def _remove_hooks(handles: list, store: dict) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()
    store.clear()


@contextmanager
def tapped(model: nn.Module, tap: str, role: str = "model") -> Iterator[Callable[..., torch.Tensor]]:
    """A function ``features(*args, **kwargs)`` that runs ``model`` and returns the tensor at ``tap``,
    flattened to ``(B, D)``; the hook is removed when the block ends.

    >>> with tapped(net, "features") as features:   # doctest: +SKIP
    ...     phi = features(images)
    """
    spec = parse_tap(tap)
    recorder = TapRecorder(model, [spec], role)

    def features(*args: Any, **kwargs: Any) -> torch.Tensor:
        recorder.clear()
        model(*args, **kwargs)
        return recorder.get(spec).flatten(1)

    try:
        yield features
    finally:
        recorder.remove()
