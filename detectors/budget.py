"""False-alarm budget: control-limit widths derived from a target in-control average run length.

The average run length (ARL) is the expected number of points until a chart alarms; ARL0 is
its value for an in-control series, so ``1 / ARL0`` is the false-alarm rate per point. These
functions compute ARLs of the charts in this package for normal data with known mean and σ,
and invert them:

- Shewhart: closed form, ``k = Φ⁻¹(1 − 1 / (2·ARL0))``.
- Two-sided tabular CUSUM: the Brook–Evans Markov chain of each one-sided sum, 400 states
  with Richardson extrapolation from 200 (relative error below 1e-5 against 1,600 states
  and the published integral-equation value 930.89 for k = 0.5, h = 5), combined by
  ``1/ARL = 1/ARL⁺ + 1/ARL⁻``.
- EWMA: the run-length integral equation solved by Gauss–Legendre (Nyström) quadrature
  (Crowder 1987); relative error below 1e-6. With exact, time-varying limits the density of
  the statistic is carried step by step until the limits are within 1e-7 of asymptotic.

Inverting an ARL is a bracketed root search on the limit width (regula falsi on log ARL,
to 1e-7 or a relative ARL error of 1e-12) and is cached per argument tuple, so thousands of
series configured alike pay for it once (about 0.1 s for CUSUM, 0.02 s for EWMA with
asymptotic limits, 0.05 s with exact ones at λ = 0.1, seconds for λ ≤ 0.01).

>>> round(shewhart_k_for_arl(370.4), 3)
3.0
>>> round(cusum_arl(h=5.0, k=0.5), 0), round(cusum_arl(h=5.0, k=0.5, shift=1.0), 1)
(465.0, 10.4)
>>> round(ewma_arl(L=2.814, lambda_=0.1), 0), round(ewma_arl(L=2.814, lambda_=0.1, shift=1.0), 1)
(500.0, 10.3)
>>> arl_for_budget(events_per_day=1440, days=30)
43200.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)
_TOLERANCE = 1e-7
"""Width of the final bracket around a derived limit."""
EWMA_LIMITS = ("exact", "asymptotic")

FloatArray = npt.NDArray[np.float64]


def _check_arl(arl: float, name: str = "arl") -> float:
    if isinstance(arl, bool) or not isinstance(arl, int | float) or not 1.0 < arl < math.inf:
        raise ValueError(
            f"{name} must be a finite number > 1 (points per false alarm), got {arl!r}"
        )
    return float(arl)


def _check_shift(shift: float) -> float:
    if isinstance(shift, bool) or not isinstance(shift, int | float) or not math.isfinite(shift):
        raise ValueError(f"shift must be a finite number (mean shift in σ), got {shift!r}")
    return float(shift)


def arl_for_budget(events_per_day: float, days: float) -> float:
    """Target ARL0 for at most one false alarm per series per ``days`` at its event rate.

    The expected number of false alarms in ``days`` is ``events_per_day · days / ARL0``.
    """
    for name, value in (("events_per_day", events_per_day), ("days", days)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0.0 < value < math.inf
        ):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    arl = float(events_per_day) * float(days)
    if not arl > 1.0:
        raise ValueError(
            f"events_per_day · days must exceed 1 point per false alarm, got {arl!r}"
        )
    return arl


# --- Shewhart -----------------------------------------------------------------------------


def shewhart_arl(k: float, shift: float = 0.0) -> float:
    """ARL of a Shewhart individuals chart with limits ±kσ, for a mean shift in σ units."""
    shift = _check_shift(shift)
    p = _NORMAL.cdf(-k - shift) + _NORMAL.cdf(-k + shift)
    return 1.0 / p


def shewhart_k_for_arl(arl: float) -> float:
    """Limit width k (in σ) of a Shewhart individuals chart whose in-control ARL is ``arl``."""
    arl = _check_arl(arl)
    return _NORMAL.inv_cdf(1.0 - 1.0 / (2.0 * arl))


# --- CUSUM --------------------------------------------------------------------------------

_CUSUM_STATES = 400


def _normal_cdf_difference(a: FloatArray, b: FloatArray) -> FloatArray:
    """Φ(a) − Φ(b) for a ≥ b, without cancellation in either tail."""

    def erfc(x: FloatArray) -> FloatArray:
        return np.array([math.erfc(v) for v in (x / _SQRT2).tolist()], dtype=np.float64)

    upper_a, upper_b = 0.5 * erfc(a), 0.5 * erfc(b)  # 1 − Φ
    lower_a, lower_b = 0.5 * erfc(-a), 0.5 * erfc(-b)  # Φ
    result: FloatArray = np.where(b >= 0.0, upper_b - upper_a, lower_a - lower_b)
    return result


def _cusum_one_sided_arl(h: float, k: float, mean: float, states: int) -> float:
    """Brook–Evans ARL of C = max(0, C + X − k) from C = 0, alarm when C > h, X ~ N(mean, 1)."""
    width = 2.0 * h / (2 * states - 1)  # state 0 is [0, w/2), state i is (i ± 1/2)·w
    steps = np.arange(-(states - 1), states, dtype=np.float64)  # j − i
    top = steps * width + 0.5 * width + k - mean
    cell = _normal_cdf_difference(top, top - width)
    below = _normal_cdf_difference(top, np.full_like(top, -np.inf))
    index = np.arange(states)
    offsets = index[None, :] - index[:, None] + states - 1
    transition = cell[offsets]
    transition[:, 0] = below[offsets[:, 0]]  # everything below the first cell resets to 0
    lengths = np.linalg.solve(np.eye(states) - transition, np.ones(states))
    return float(lengths[0])


def _cusum_one_sided(h: float, k: float, mean: float) -> float:
    coarse = _cusum_one_sided_arl(h, k, mean, _CUSUM_STATES // 2)
    fine = _cusum_one_sided_arl(h, k, mean, _CUSUM_STATES)
    return (4.0 * fine - coarse) / 3.0  # the discretisation error falls as 1/states²


def cusum_arl(h: float, k: float, shift: float = 0.0) -> float:
    """ARL of the two-sided tabular CUSUM (k, h in σ units) from zero sums, for a mean shift."""
    shift = _check_shift(shift)
    if not 0.0 < h < math.inf or not 0.0 <= k < math.inf:
        raise ValueError(f"need 0 < h < inf and 0 <= k < inf, got h={h!r}, k={k!r}")
    upper = _cusum_one_sided(h, k, shift)
    lower = upper if shift == 0.0 else _cusum_one_sided(h, k, -shift)
    return 1.0 / (1.0 / upper + 1.0 / lower)


@lru_cache(maxsize=256)
def cusum_h_for_arl(arl: float, k: float = 0.5) -> float:
    """Decision interval h (in σ) of a two-sided tabular CUSUM whose in-control ARL is ``arl``."""
    arl = _check_arl(arl)
    if isinstance(k, bool) or not isinstance(k, int | float) or not 0.0 <= k < math.inf:
        raise ValueError(f"k must be a finite number >= 0 (reference value in σ), got {k!r}")
    return _invert(lambda h: cusum_arl(h, float(k)), arl, "h")


# --- EWMA ---------------------------------------------------------------------------------


def _legendre(nodes: int) -> tuple[FloatArray, FloatArray]:
    points, weights = np.polynomial.legendre.leggauss(nodes)
    return points, weights


def _ewma_nodes(half_width: float, lambda_: float) -> int:
    # Node spacing of at most ~λ/4 keeps the kernel (std λ) well resolved.
    return int(min(400, max(48, math.ceil(8.0 * half_width / lambda_))))


def _ewma_kernel(
    x: FloatArray, y: FloatArray, lambda_: float, mean: float
) -> FloatArray:
    """Density of the next EWMA value y given the current x (rows x, columns y)."""
    u = (y[None, :] - (1.0 - lambda_) * x[:, None]) / lambda_ - mean
    kernel: FloatArray = np.exp(-0.5 * u * u) / (math.sqrt(2.0 * math.pi) * lambda_)
    return kernel


def ewma_arl(
    L: float,
    lambda_: float,
    shift: float = 0.0,
    limits: str = "asymptotic",
) -> float:
    """ARL of an EWMA chart started at the mean, limits ±L·σ_EWMA, for a mean shift in σ."""
    shift = _check_shift(shift)
    if limits not in EWMA_LIMITS:
        raise ValueError(f"limits must be one of {EWMA_LIMITS!r}, got {limits!r}")
    if not 0.0 < lambda_ <= 1.0 or not 0.0 < L < math.inf:
        raise ValueError(f"need 0 < lambda_ <= 1 and 0 < L < inf, got {lambda_!r}, {L!r}")
    spread = math.sqrt(lambda_ / (2.0 - lambda_))
    half = L * spread  # asymptotic limit, in σ of the observations
    m = _ewma_nodes(half, lambda_)
    unit, unit_weights = _legendre(m)
    nodes, weights = half * unit, half * unit_weights
    kernel = _ewma_kernel(nodes, nodes, lambda_, shift)
    # A(x) = 1 + ∫ A(y) K(x, y) dy on the Gauss–Legendre nodes (Nyström).
    remaining = np.linalg.solve(np.eye(m) - kernel * weights[None, :], np.ones(m))

    def expected_remaining(points: FloatArray) -> FloatArray:
        interpolated: FloatArray = 1.0 + (
            _ewma_kernel(points, nodes, lambda_, shift) * weights[None, :]
        ) @ remaining
        return interpolated

    if limits == "asymptotic" or lambda_ == 1.0:
        return float(expected_remaining(np.zeros(1))[0])

    # Exact limits: carry the sub-density of the surviving EWMA forward while they widen.
    decay = (1.0 - lambda_) ** 2
    steps = math.log(2.0 * _TOLERANCE) / math.log(decay)  # until the limits are asymptotic
    if steps > MAX_EXACT_STEPS:
        raise ValueError(
            f"exact limits with lambda_ = {lambda_!r} need {steps:.0f} steps to compute an "
            f"ARL (at most {MAX_EXACT_STEPS}): use limits = \"asymptotic\", or give L instead "
            "of arl0"
        )
    total = 1.0  # P(run length > 0)
    previous_nodes = np.zeros(1)
    density = np.ones(1)  # a point mass at 0, weight 1
    previous_weights = np.ones(1)
    step = 1
    while True:
        factor = math.sqrt(1.0 - decay**step)
        current_nodes = half * factor * unit
        if step == 1:
            density = _ewma_kernel(np.zeros(1), current_nodes, lambda_, shift)[0]
        else:
            density = (previous_weights * density) @ _ewma_kernel(
                previous_nodes, current_nodes, lambda_, shift
            )
        current_weights = half * factor * unit_weights
        if 1.0 - factor < _TOLERANCE:
            return total + float((current_weights * density) @ expected_remaining(current_nodes))
        total += float(current_weights @ density)
        previous_nodes, previous_weights = current_nodes, current_weights
        step += 1


MAX_EXACT_STEPS = 3_000
"""Steps an exact-limit EWMA ARL may take (lambda_ >= ~0.0026); each is a matrix product, so a
tiny lambda_ would otherwise keep ``check-config`` busy for hours."""


@lru_cache(maxsize=256)
def ewma_L_for_arl(
    arl: float, lambda_: float = 0.1, limits: str = "asymptotic"
) -> float:
    """Limit width L of an EWMA chart (smoothing ``lambda_``) whose in-control ARL is ``arl``."""
    arl = _check_arl(arl)
    if isinstance(lambda_, bool) or not isinstance(lambda_, int | float) or not (
        0.0 < lambda_ <= 1.0
    ):
        raise ValueError(f"lambda_ must be a number in (0, 1], got {lambda_!r}")
    if limits not in EWMA_LIMITS:
        raise ValueError(f"limits must be one of {EWMA_LIMITS!r}, got {limits!r}")
    return _invert(lambda L: ewma_arl(L, float(lambda_), 0.0, limits), arl, "L")


# --- inversion ----------------------------------------------------------------------------


def _invert(arl_of: Callable[[float], float], target: float, name: str) -> float:
    """The width w with ``arl_of(w) == target``; the ARL must increase with the width.

    A bracketing search on log ARL: regula falsi with the Illinois modification, falling back
    to bisection steps, so the bracket always shrinks and ends narrower than 1e-7.
    """
    goal = math.log(target)
    low, high = 1e-3, 1.0
    f_low = math.log(arl_of(low)) - goal
    if f_low > 0.0:
        raise ValueError(
            f"arl0 {target!r} is below the shortest ARL this chart can have "
            f"({arl_of(low):.3g} points); ask for a longer ARL"
        )
    f_high = math.log(arl_of(high)) - goal
    while f_high < 0.0:
        low, f_low = high, f_high
        high *= 2.0
        if high > 64.0:
            raise ValueError(f"arl0 {target!r} needs {name} > 64; ask for a shorter ARL")
        f_high = math.log(arl_of(high)) - goal
    side = 0
    while high - low > _TOLERANCE:
        middle = (low * f_high - high * f_low) / (f_high - f_low)
        if not low < middle < high:
            middle = 0.5 * (low + high)
        f_middle = math.log(arl_of(middle)) - goal
        if f_middle == 0.0:
            return middle
        if f_middle < 0.0:
            low, f_low = middle, f_middle
            if side == -1:
                f_high *= 0.5  # Illinois: stop the other end from sticking
            side = -1
        else:
            high, f_high = middle, f_middle
            if side == 1:
                f_low *= 0.5
            side = 1
        if abs(f_middle) < 1e-12:
            return middle
    return 0.5 * (low + high)
