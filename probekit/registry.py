"""A small generic registry with lazy entries and "did you mean" errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from probekit.errors import UnknownNameError, UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → object, where an entry may be a zero-argument loader run on first use."""

    def __init__(self, kind: str):
        self.kind = kind
        self._loaders: dict[str, Callable[[], T]] = {}
        self._loaded: dict[str, T] = {}

    def add(self, name: str, obj: T | None = None, *, loader: Callable[[], T] | None = None,
            replace: bool = False) -> None:
        """Register `obj`, or `loader` to build it on first `get`."""
        if (obj is None) == (loader is None):
            raise TypeError("give exactly one of obj and loader")
        if not replace and name in self:
            raise UserError(f"{self.kind} {name!r} is registered twice; rename one of them")
        self._loaded.pop(name, None)
        self._loaders[name] = loader if loader is not None else (lambda: obj)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def wrap(obj: T) -> T:
            self.add(name, obj)
            return obj

        return wrap

    def get(self, name: str) -> T:
        if name not in self._loaders:
            raise UnknownNameError(self.kind, name, self._loaders)
        if name not in self._loaded:
            self._loaded[name] = self._loaders[name]()
        return self._loaded[name]

    def names(self) -> list[str]:
        return sorted(self._loaders)

    def __contains__(self, name: object) -> bool:
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaders)
