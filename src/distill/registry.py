"""Name → factory registries, so recipes and ``distill list`` see every method by name.

In the spirit of torchdistill's registries: a decorator registers a class or
function under a name; an unknown name fails with the list of valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from distill.errors import ConfigError, DistillError, closest, unknown_name_message

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """A named collection of factories of one kind (losses, models, datasets)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated factory under ``name``."""

        def decorate(factory: T) -> T:
            if name in self._entries:
                raise DistillError(f"{self.kind} {name!r} is registered twice; pick another name.")
            self._entries[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> T:
        """The factory called ``name``; an unknown name lists the valid ones."""
        if name not in self._entries:
            raise DistillError(unknown_name_message(self.kind, name, self._entries))
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the factory ``name`` with ``kwargs``; bad keyword names are reported clearly."""
        factory = self.get(name)
        self._check_options(name, factory, kwargs)
        try:
            return factory(**kwargs)
        except TypeError as err:
            raise DistillError(f"cannot build {self.kind} {name!r} with {kwargs}: {err}") from None

    def check(self, name: str, options: dict[str, Any], **context: Any) -> None:
        """Refuse an unknown ``name``, an option its factory does not take, or a value it refuses, and keep
        nothing: the one pre-flight check of a registered method, loss or guidance (a recipe runs it when it
        loads). Option names are checked against the factory's signature; values by the factory itself,
        which raises a :class:`ConfigError`: a factory built from its options alone is built once and
        dropped, and one whose construction needs data (a condenser needs the images) checks them in its
        ``check_options(options, **context)`` classmethod, which its constructor calls too."""
        factory = self.get(name)
        self._check_options(name, factory, options)
        check_options = getattr(factory, "check_options", None)
        if callable(check_options):
            check_options(dict(options), **context)
        else:
            self.build(name, **options)

    def _check_options(self, name: str, factory: T, kwargs: dict[str, Any]) -> None:
        """Refuse keyword names the factory's signature lacks (factories taking ``**kwargs`` are not checked)."""
        try:
            parameters = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):  # no introspectable signature: the call itself will tell
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return
        valid = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [key for key in kwargs if key not in valid]
        if not unknown:
            return
        if not valid:
            raise ConfigError(
                f"cannot build {self.kind} {name!r}: it takes no options, got {', '.join(map(repr, unknown))}; "
                "remove them."
            )
        hints = {key: closest(key, valid, n=1) for key in unknown}
        guesses = [f"{hint[0]!r}" + (f" for {key!r}" if len(unknown) > 1 else "")
                   for key, hint in hints.items() if hint]
        did_you_mean = f" Did you mean {', '.join(guesses)}?" if guesses else ""
        raise ConfigError(
            f"cannot build {self.kind} {name!r}: unexpected keyword argument {', '.join(map(repr, unknown))}."
            f"{did_you_mean} Valid options: {', '.join(valid)}."
        )

    def describe(self, name: str) -> str:
        """First paragraph of the factory's docstring, on one line."""
        doc = (self.get(name).__doc__ or "").strip()
        return " ".join(line.strip() for line in doc.split("\n\n")[0].splitlines())

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
