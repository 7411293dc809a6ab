"""Name → factory registries, so recipes and ``distill list`` see every method by name.

In the spirit of torchdistill's registries: a decorator registers a class or
function under a name; an unknown name fails with the list of valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from distill.errors import DistillError, unknown_name_message

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
        try:
            return factory(**kwargs)
        except TypeError as err:
            raise DistillError(f"cannot build {self.kind} {name!r} with {kwargs}: {err}") from None

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
