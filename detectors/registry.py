"""A registry of classes by name, so configuration and the CLI can build and restore them.

Detectors (:mod:`detectors.base`) and learners (:mod:`updaters.base`) each keep one.

>>> shapes: Registry[object] = Registry("shape")
>>> @shapes.register("square")
... class Square:
...     def __init__(self, side: float = 1.0) -> None:
...         self.side = side
>>> shapes.names(), shapes.build("square", {"side": 2.0}).side, Square.name
(['square'], 2.0, 'square')
>>> shapes.build("circle")
Traceback (most recent call last):
...
ValueError: unknown shape 'circle'; choose one of: square
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes registered by name; ``kind`` names what they are in error messages, and a class
    that does not set one of the attributes in ``defaults`` gets it at registration."""

    def __init__(self, kind: str, defaults: Mapping[str, object] | None = None) -> None:
        self.kind = kind
        self.defaults = dict(defaults or {})
        self._classes: dict[str, type[Any]] = {}

    def register(self, name: str) -> Callable[[type[Any]], type[Any]]:
        """Class decorator: make the class buildable by ``name`` and set its ``name``."""

        def decorate(cls: type[Any]) -> type[Any]:
            if name in self._classes:
                raise ValueError(f"{self.kind} name {name!r} is registered twice")
            self._classes[name] = cls
            cls.name = name
            for attribute, value in self.defaults.items():
                if not hasattr(cls, attribute):
                    setattr(cls, attribute, value)
            return cls

        return decorate

    def names(self) -> list[str]:
        """Names of all registered classes, sorted."""
        return sorted(self._classes)

    def find(self, name: str) -> type[Any]:
        """The class registered as ``name``; ValueError for a name saved in state but unknown."""
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r} in saved state") from None

    def build(self, name: str, params: Mapping[str, Any] | None = None) -> T:
        """An instance of the class registered as ``name`` with keyword ``params``.

        Raises ``ValueError`` naming the valid choices when the name or a parameter is unknown.
        """
        try:
            cls = self._classes[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None
        try:
            built: T = cls(**dict(params or {}))
        except TypeError as exc:
            raise ValueError(f"bad parameters for {self.kind} {name!r}: {exc}") from exc
        return built

    def parameters(self, name: str) -> frozenset[str]:
        """The keyword parameters the class registered as ``name`` takes (empty if unknown)."""
        cls = self._classes.get(name)
        return frozenset() if cls is None else frozenset(inspect.signature(cls).parameters)

    def restore(self, name: str, state: Mapping[str, Any]) -> T:
        """An instance of the class registered as ``name`` rebuilt by its ``from_state``."""
        restored: T = self.find(name).from_state(state)
        return restored
