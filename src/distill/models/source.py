"""Where a recipe's network comes from, named by one string (``teacher.model``, ``student.model``):

============================  ===============================================================
``convnet``, ``mlp``, ...     the zoo (:data:`~distill.models.MODELS`), built for the data
``my_models:build_net``       the user's own callable or class (``package.module:Class``),
                              found on the current directory or among installed packages
``torchvision:resnet18``      a torchvision architecture (``pip install 'distill[torchvision]'``)
``timm:resnet18``             a timm architecture (``pip install 'distill[timm]'``)
``hf:path/to/folder``         a local Hugging Face image classifier, with its weights
============================  ===============================================================

``options`` are keyword arguments of the builder. A callable that names ``num_classes`` or
``input_shape`` gets the data's, unless ``options`` sets them; library architectures get
``num_classes`` (and timm ``in_chans``). Library weights come from the user's own file only
(``teacher.weights``): nothing is downloaded. Every failure is one :class:`ConfigError` that
names the model, what failed and what would work.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.errors import ConfigError, closest, unknown_name_message
from distill.models import MODELS, build_model
from distill.models.libraries import LIBRARIES

#: How a recipe names its own code; said when a model name is not found.
FORMS = "'my_models:build_net', 'torchvision:resnet18', 'timm:resnet18' or 'hf:path/to/folder'"


def build_network(name: str, input_shape: Sequence[int], num_classes: int, options: dict[str, Any]) -> nn.Module:
    """The network ``name`` (a zoo name or one of the forms above) for ``input_shape`` (no batch
    dimension) and ``num_classes``, built with ``options``."""
    prefix, _, rest = name.partition(":")
    if not rest:
        return _zoo(name, input_shape, num_classes, options)
    if prefix in LIBRARIES:
        return LIBRARIES[prefix].build(prefix, rest, input_shape, num_classes, dict(options))
    return _checked_module(name, _call(name, _resolve(name), input_shape, num_classes, options))


def carries_weights(name: str) -> bool:
    """Whether the network comes with its own trained weights (a Hugging Face folder does)."""
    prefix, _, rest = name.partition(":")
    return bool(rest) and prefix in LIBRARIES and LIBRARIES[prefix].carries_weights


def source_identity(name: str) -> dict[str, str]:
    """What besides ``name`` and its options decides the network, for content-hash caches: the
    source file of an imported callable, the version of a library; nothing for a zoo model."""
    prefix, _, rest = name.partition(":")
    if not rest:
        return {}
    if prefix in LIBRARIES:
        return {"library": LIBRARIES[prefix].version(name)}
    try:
        source = inspect.getsourcefile(_resolve(name))
    except TypeError:  # a built-in callable has no source file
        source = None
    return {"code": hashlib.sha256(Path(source).read_bytes()).hexdigest()} if source else {}


def check_forward(model: nn.Module, example: torch.Tensor, num_classes: int, what: str) -> None:
    """One pass of ``example`` (a batch) through ``model`` in eval mode: a model that cannot take the
    data's inputs, or does not return ``(batch, num_classes)`` logits, fails here naming both."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(example)
    except Exception as err:  # noqa: BLE001  (any failure of user code is reported the same way)
        raise ConfigError(
            f"{what} cannot take the data's inputs of shape {tuple(example.shape[1:])} (batch dimension "
            f"not counted): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Change the "
            "model's options (its input size or channels) or the data."
        ) from None
    finally:
        model.train(was_training)
    expected = (len(example), num_classes)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ConfigError(
            f"{what} returns {got} for a batch of {len(example)}, but the data has {num_classes} classes: a "
            f"classifier must return logits of shape {expected}. Set its number of outputs (e.g. options: "
            f"{{num_classes: {num_classes}}}) or return the logits tensor from forward."
        )


def _zoo(name: str, input_shape: Sequence[int], num_classes: int, options: dict[str, Any]) -> nn.Module:
    if name in MODELS:
        return build_model(name, input_shape, num_classes, **options)
    module, _, attr = name.rpartition(".")
    hint = f" An import path puts a colon before the callable: '{module}:{attr}'." if module else ""
    raise ConfigError(f"{unknown_name_message('model', name, MODELS.names())}{hint} Your own models: {FORMS}.")


@contextmanager
def _current_directory_on_path() -> Iterator[None]:
    """The current directory searched last, as ``python -m`` would, while importing the user's module."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    importlib.invalidate_caches()  # a module written after the last import is found
    try:
        yield
    finally:
        if added:
            sys.path.remove(cwd)


def _resolve(name: str) -> Callable[..., Any]:
    """The callable that ``module:attr`` (``attr`` may be dotted) names."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"model {name!r}: an import path names a module and a callable, e.g. {FORMS}.")
    with _current_directory_on_path():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                raise ConfigError(
                    f"model {name!r}: no module {module_name!r} in the current directory ({os.getcwd()}) or among "
                    f"installed packages. Run from the folder that holds {module_name.replace('.', '/')}.py, or "
                    "install its package."
                ) from None
            raise ConfigError(f"model {name!r}: module {module_name!r} imports {err.name!r}, which is not "
                              "installed.") from None
        except Exception as err:  # noqa: BLE001  (a broken user module: say which and why)
            raise ConfigError(f"model {name!r}: importing {module_name!r} failed: {type(err).__name__}: {err}") from None
    found: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(found, part):
            owner = ".".join([module_name, *attr.split(".")[:i]])
            names = [n for n in dir(found) if not n.startswith("_") and callable(getattr(found, n))]
            hint = closest(part, names)
            suggestion = f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
            where = getattr(module, "__file__", None) or module_name
            raise ConfigError(f"model {name!r}: {owner!r} ({where}) has no {part!r}.{suggestion} "
                              f"It defines: {', '.join(sorted(names)[:12]) or 'no callables'}.")
        found = getattr(found, part)
    if not callable(found):
        raise ConfigError(f"model {name!r}: {attr!r} is a {type(found).__name__}, not a class or function that "
                          "builds a model.")
    return found


def _call(name: str, factory: Callable[..., Any], input_shape: Sequence[int], num_classes: int,
          options: dict[str, Any]) -> Any:
    """``factory(**options)``, with the data's ``num_classes``/``input_shape`` where its signature names them."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no introspectable signature: the call itself will tell
        signature = None
    named = signature.parameters if signature else {}
    data = {"num_classes": num_classes, "input_shape": tuple(input_shape)}
    kwargs = {**{k: v for k, v in data.items() if k in named and k not in options}, **options}
    try:
        if signature:
            signature.bind(**kwargs)
    except TypeError as err:
        raise ConfigError(f"model {name!r} cannot be built with options {options}: {err}. Its parameters: "
                          f"{', '.join(named) or 'none'}.") from None
    try:
        return factory(**kwargs)
    except Exception as err:  # noqa: BLE001  (user code: name the model and the options it got)
        raise ConfigError(f"model {name!r} failed to build with {kwargs}: {type(err).__name__}: {err}") from None


def _checked_module(name: str, built: Any) -> nn.Module:
    if not isinstance(built, nn.Module):
        raise ConfigError(f"model {name!r} returned a {type(built).__module__}.{type(built).__name__}, not a "
                          "torch.nn.Module; point the import path at a function that returns the model, or at "
                          "the model's class.")
    return built
