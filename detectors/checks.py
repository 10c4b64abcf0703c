"""Parameter checks shared by detectors and learners: each returns the value or raises a
ValueError naming the parameter, the bad value and what is expected.

>>> check_positive("k", 3, "limit width in σ"), check_warmup(30), check_arl0(None)
(3.0, 30, None)
>>> check_outliers("drop")
Traceback (most recent call last):
...
ValueError: outliers must be one of 'clip', 'exclude', 'learn', got 'drop'
"""

from __future__ import annotations

import math

OUTLIER_POLICIES = ("clip", "exclude", "learn")
"""How a point beyond the limits feeds the statistics once warm-up is over."""


def check_positive(name: str, value: object, meaning: str, *, zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (>= 0 with ``zero``), else ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0.0 <= value < math.inf if zero else 0.0 < value < math.inf)
    ):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} ({meaning}), got {value!r}")
    return float(value)


def check_warmup(warmup: object) -> int:
    """``warmup`` if it is an integer >= 2, else ValueError."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 2:
        raise ValueError(f"warmup must be an integer >= 2, got {warmup!r}")
    return warmup


def check_outliers(outliers: object) -> str:
    """``outliers`` if it names an outlier policy, else ValueError."""
    if outliers not in OUTLIER_POLICIES:
        choices = ", ".join(map(repr, OUTLIER_POLICIES))
        raise ValueError(f"outliers must be one of {choices}, got {outliers!r}")
    return str(outliers)


def check_lag(lag: object) -> int:
    """``lag`` if it is an integer from 0 to 4,096, else ValueError."""
    if isinstance(lag, bool) or not isinstance(lag, int) or not 0 <= lag <= 4096:
        raise ValueError(f"lag must be an integer from 0 to 4096 (points before a point is "
                         f"learned, once warm), got {lag!r}")
    return lag


def check_arl0(arl0: object) -> float | None:
    """``arl0`` if it is None or a finite number > 1, else ValueError."""
    if arl0 is None:
        return None
    if isinstance(arl0, bool) or not isinstance(arl0, int | float) or not 1.0 < arl0 < math.inf:
        raise ValueError(
            f"arl0 must be None or a finite number > 1 (points per false alarm), got {arl0!r}"
        )
    return float(arl0)
