"""Every error Vigil raises on purpose, in one tree, so a caller can catch all of them at once.

::

    VigilError              base: anything Vigil reports rather than crashes on
    ├── ConfigError         bad configuration: names the key, the bad value and the fix
    ├── EventError          an input event that cannot be used: it goes to the dead-letter topic
    ├── StateError          detector state that cannot be checkpointed or restored
    └── BrokerError         Kafka unreachable or refusing; the clients' errors translated here
        └── MessageRefused  one message refused for what it is (size, format): never resent

Third-party exceptions are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class VigilError(Exception):
    """Base class of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """Invalid configuration; the message names the key, the bad value and the fix."""


class EventError(VigilError):
    """An input event that cannot be decoded or validated, so it is dead-lettered.

    ``reason`` is a short code from a small fixed set (``stream.engine.events.REASONS``), safe as a
    Prometheus label; ``detail`` names the field and what was wrong with it, for people.

    >>> str(EventError("not_finite", "field 'prediction' must be a finite number, got NaN"))
    "not_finite: field 'prediction' must be a finite number, got NaN"
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)  # both in args, so the error pickles and reprs whole
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class StateError(VigilError):
    """Detector state that cannot be checkpointed or restored."""


class BrokerError(VigilError):
    """Kafka is unreachable or refuses an operation."""


class MessageRefused(BrokerError):
    """The broker refused a message for what it is (too large, malformed): sending it again
    can never work, so it goes to the dead-letter topic instead of being retried for ever."""
