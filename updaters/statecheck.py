"""Reading a saved state that came back from outside (the state topic): exact keys, types and
ranges, and ``ValueError`` — never another exception — on anything else.

A ``from_state`` reads its fields through a :class:`StateReader` and builds its object only
from what the reader returned, so a state cannot name an attribute to set or a type to build.
Parts restored by code that does not check as strictly (a detector, a learner from the
caller's ``restore``) are wrapped by :func:`restored_exactly`: any exception becomes a
``ValueError``, and the restored part must save back the state it was given.

>>> reader = StateReader({"n": 3, "rate": 0.5}, "chart")
>>> reader.keys("n", "rate")
>>> reader.integer("n", minimum=1), reader.number("rate", minimum=0.0)
(3, 0.5)
>>> StateReader({"n": True}, "chart").integer("n")
Traceback (most recent call last):
...
ValueError: bad chart state: n must be an integer, got True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class StateReader:
    """Typed reads from one mapping of a saved state; every failure is a ``ValueError``."""

    def __init__(self, state: object, what: str) -> None:
        if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
            raise ValueError(f"bad {what} state: expected an object, got {type(state).__name__}")
        self.state: Mapping[str, Any] = state
        self.what = what

    def fail(self, message: str) -> ValueError:
        """The error to raise for ``message`` about this state."""
        return ValueError(f"bad {self.what} state: {message}")

    def keys(self, *names: str) -> None:
        """The state has exactly these keys."""
        have = set(self.state)
        if have != set(names):
            missing, extra = sorted(set(names) - have), sorted(have - set(names))
            raise self.fail(f"keys differ (missing {missing}, unexpected {extra})")

    def value(self, key: str) -> Any:
        try:
            return self.state[key]
        except KeyError:
            raise self.fail(f"{key} is missing") from None

    def integer(self, key: str, *, minimum: int = 0, maximum: int | None = None) -> int:
        """An int (not a bool) in [minimum, maximum]."""
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} must be an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            raise self.fail(f"{key} must be in [{minimum}, {maximum}], got {value!r}")
        return value

    def number(self, key: str, *, minimum: float | None = None, maximum: float | None = None,
               above: float | None = None) -> float:
        """A finite int or float (not a bool), as given, in the range asked for."""
        return check_number(self.value(key), f"{self.what} state: {key}", minimum=minimum,
                            maximum=maximum, above=above)

    def optional_number(self, key: str, **limits: float) -> float | None:
        """None, or a number as :meth:`number` reads it."""
        return None if self.value(key) is None else self.number(key, **limits)

    def boolean(self, key: str) -> bool:
        value = self.value(key)
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, got {value!r}")
        return value

    def text(self, key: str, choices: Sequence[str] | None = None) -> str:
        value = self.value(key)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            wanted = "a string" if choices is None else f"one of {list(choices)}"
            raise self.fail(f"{key} must be {wanted}, got {value!r}")
        return value

    def numbers(self, key: str, length: int | None = None, **limits: float) -> list[float]:
        """A list of numbers (of ``length`` items, when given)."""
        values = self.value(key)
        if not isinstance(values, list) or (length is not None and len(values) != length):
            raise self.fail(f"{key} must be a list of {length or 'some'} numbers")
        return [check_number(v, f"{self.what} state: {key}[]", **limits) for v in values]

    def mapping(self, key: str) -> StateReader:
        """The nested object at ``key``."""
        return StateReader(self.value(key), f"{self.what} {key}")


def check_number(value: object, name: str, *, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None) -> float:
    """``value`` if it is a finite int or float (not a bool) within the limits, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"bad {name}: must be a finite number, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) \
            or (above is not None and value <= above):
        raise ValueError(f"bad {name}: {value!r} is out of range")
    return value


def same_state(a: object, b: object) -> bool:
    """Equal as saved states: lists and tuples alike, NaN equal to NaN, bools apart from numbers."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b if not isinstance(a, int | float) else (
        isinstance(b, int | float) and a == b)


def restored_exactly(restore: Callable[[Any], T], state: object, what: str,
                     saved: Callable[[T], object]) -> T:
    """``restore(state)``, refused with ValueError when it raises anything or when the result
    does not save back exactly ``state`` (``saved(result)``): a part restored by code that
    reads loosely (casting, defaulting) cannot continue from a state it did not write."""
    try:
        restored = restore(state)
        again = saved(restored)
    except Exception as exc:  # noqa: BLE001 - whatever a restore raises, the state is bad
        raise ValueError(f"bad {what} state: {exc}") from exc
    if not same_state(again, state):
        raise ValueError(f"bad {what} state: it does not restore to itself")
    return restored
