"""The adaptive detector's per-point step compiled over arrays: many series, one call.

:class:`~detectors.adaptive.AdaptiveDetector` judges a point in about 35 µs of Python. Its step
is sequential per series (each point reads what the previous one learned), so numpy cannot
vectorise it across points; this module runs the same step as numba-compiled loops over a
structure of arrays, one row per series, a few hundred nanoseconds per point.

:class:`AdaptiveKernel` holds the rows: per-row scalars in two matrices (``floats`` and
``ints``, columns named by the constants below), the baseline's points waiting to be learned
in a ring (``pending``), its first points (``start``), the seasonal profile's 168 hourly means
(``means``) and the three block-extreme memories (values, smoothed levels, the shift test's
record) as ``blocks``/``current``/``shape``. :meth:`AdaptiveKernel.score_points` scores points
in order, each on its row: one long series (replay) and a poll of interleaved series are the
same call. Results, states and :meth:`AdaptiveKernel.export` equal the object path's exactly
(the float operations are the same, in the same order, single-precision storage included), so
a row converts to and from :meth:`AdaptiveDetector.state_dict` both ways and checkpoints keep
their format.

Compiling takes 20-50 s, once: the machine code is cached on disk in ``__pycache__`` next to
this file (``NUMBA_CACHE_DIR`` if set), loaded in well under a second afterwards. On a
read-only install numba caches under the user's cache directory (``~/.cache/numba``), and
where nothing is writable the functions are compiled in memory at each start
(:data:`CACHE` is False). The cache is keyed on this file only, so it is emptied when the
constants it froze from :mod:`detectors.adaptive` and friends have changed since.

>>> from vigil.detectors.adaptive import AdaptiveDetector
>>> kernel = AdaptiveKernel(2)
>>> kernel.load(0, AdaptiveDetector().state_dict()); kernel.load(1, AdaptiveDetector().state_dict())
>>> rows = np.array([0, 1] * 300)
>>> values = np.where(np.arange(600) == 501, 40.0, 10.0 + np.arange(600) % 3)
>>> out = kernel.score_points(rows, values, 60.0 * np.arange(600.0))
>>> [(j, int(out.fired[j])) for j in np.flatnonzero(out.anomaly).tolist()]
[(501, 1)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from vigil.detectors.adaptive import (
    BELOW_ALERT,
    CLEAR_AFTER,
    EXTREME_HIGH,
    GATE,
    HORIZON,
    LAG,
    LEVEL_BLOCKS,
    REFERENCE,
    SHIFT,
    SPAN,
    SPREAD_CHANGE,
    WINSOR,
    Z_CLIP,
    AdaptiveDetector,
    _limits,
)
from vigil.detectors.base import Explanation, PointResult
from vigil.detectors.extremes import ANCHOR_RANK, BLOCKS, FIRST_BLOCK, LONGEST_BLOCK
from vigil.detectors.seasonal import (
    EXPLAINED,
    KEEP,
    PROFILE_CHOICES,
    PROFILE_WEEKS,
    SEASON_DAY,
    SEASON_NONE,
    SEASON_WEEK,
    WEEKLY_GAIN,
)
from vigil.detectors.stats import START_POINTS, WARMUP_SCREEN

Floats = npt.NDArray[np.float64]
Singles = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

_LN10 = math.log(10.0)
_LN2 = math.log(2.0)
_LOG_TESTS = math.log10(4.0)
_SIEGMUND = 1.166
_MAD_TO_SIGMA = math.sqrt(math.pi / 2.0)
_MAD_SCALE = 1.4826
_HOUR = 3600.0
_DAY = 86400.0
_WEEK = 7 * 86400.0
_MONDAY = 3 * 86400.0
_INF = math.inf

# columns of AdaptiveKernel.floats
(B_MEAN, B_SPREAD, B_LAGGED_SQUARE, B_LAGGED_PRODUCT, B_LAST_Z,
 E_LEVEL, E_SPREAD, E_HIGH, E_LOW, E_NORMAL_LOW, E_NORMAL_HIGH,
 CUSUM_UP, CUSUM_DOWN, EWMA, PREVIOUS, RESOLUTION,
 P_UNIT, P_TOTAL, P_LEVEL, P_ERROR, _P_ERROR_DAY, _P_ERROR_WEEK, P_INTERVAL, P_FIRST, P_LAST,
 THRESHOLD, TARGET, ALARM_CUSUM, QUIET_CUSUM, VISIBILITY, ALPHA) = range(31)
FLOAT_COLUMNS = 31
# columns of AdaptiveKernel.ints
(B_COUNT, B_HEAD, B_PENDING, B_HELD, E_OPEN, E_LENGTH, E_QUIET, E_TEST, SEEN,
 P_SEASON, P_CHOICE, P_FILLED, P_SEEN, WARMUP, REBASELINE_AFTER, HAS_PROFILE) = range(16)
INT_COLUMNS = 16
# the three memories, and per memory (columns of AdaptiveKernel.shape): complete blocks,
# points in the current block, block length
VALUES, LEVELS, SHIFTS = 0, 1, 2
M_BLOCKS, M_FILLED, M_LENGTH = 0, 1, 2
_FIELDS = np.array([4, 2, 2])
"""Numbers per block: max, second max, min, second min (values); max, min (the others)."""
_SINGLE = np.array([False, True, True])
"""Whether a memory keeps its numbers in single precision."""
_CAPACITY = np.array([BLOCKS, LEVEL_BLOCKS, BLOCKS])
_PLANE = np.array([0, 1, 1])
_OFFSET = np.array([0, 0, 2])
"""Where a memory's blocks are in ``blocks[row]``: the values' four numbers fill plane 0, the
levels' and the shift record's two numbers share plane 1 (half a plane each)."""
SUMMARY = 4
"""Where a memory's summary starts in ``current`` (after the current block's four numbers):
two largest maxima, two smallest minima, tail scales above and below; NaN when stale."""
_MEMORY = ({"runners_up": True, "capacity": BLOCKS, "single": False, "longest": LONGEST_BLOCK},
           {"runners_up": False, "capacity": LEVEL_BLOCKS, "single": True,
            "longest": LONGEST_BLOCK},
           {"runners_up": False, "capacity": BLOCKS, "single": True, "longest": LONGEST_BLOCK})
_MEMORY_NAMES = ("values", "levels", "shifts")
PARAMETERS = ("alpha", "season", "visibility", "warmup", "rebaseline_after")
"""``AdaptiveDetector``'s parameters, in its ``state_dict``."""
_CHOICE_CODES = {name: code for code, name in enumerate(PROFILE_CHOICES)}

# columns of AdaptiveResults.floats and .ints
(O_SCORE, O_CENTRE, O_LOWER, O_UPPER, O_Z, O_EXTREME, O_SHIFT, O_EXTREME_SCORE, O_SHIFT_SCORE,
 O_CUSUM, O_STATISTIC, O_LIMIT) = range(12)
OUT_FLOATS = 12
(O_ANOMALY, O_N, O_RESOLVED, O_REBASELINED, O_TEST, O_SEASON, O_EPISODE, O_FIRED) = range(8)
OUT_INTS = 8
# what fired (AdaptiveResults.fired): 1 extreme high, -1 extreme low, 2 shift up, -2 shift down
FIRED_NAMES = {EXTREME_HIGH: "extreme high", -EXTREME_HIGH: "extreme low", SHIFT: "shift up",
               -SHIFT: "shift down"}


def _cache_probe() -> None:
    """Decorated only to learn whether numba can cache this module's functions."""


def _can_cache() -> bool:
    """Whether numba finds a writable cache directory for this file (it picks one when a
    function is decorated, and refuses ``cache=True`` if there is none)."""
    try:
        njit(cache=True)(_cache_probe)
    except RuntimeError:
        return False
    return True


CACHE = _can_cache()
"""Compiled functions are cached on disk when possible; otherwise compiled at first use."""


# --- small numeric helpers, with Python's max/min semantics (the first wins a tie) -------------

@njit(cache=CACHE, inline="always")
def _max(a: float, b: float) -> float:
    return b if b > a else a


@njit(cache=CACHE, inline="always")
def _min(a: float, b: float) -> float:
    return b if b < a else a


@njit(cache=CACHE, inline="always")
def _stored(value: float, single: bool) -> float:
    """``value`` as a memory keeps it: rounded to single precision for a single memory (read
    back with ``np.float64``: numba's ``float()`` of a float32 stays float32)."""
    return np.float64(np.float32(value)) if single else value


@intrinsic
def _libm_pow(typing_context: Any, x: Any, y: Any) -> Any:
    """C's ``pow``, as Python's ``x ** y`` calls it: LLVM would replace ``pow(x, 2.0)`` by
    ``x * x``, which differs from the C library's result in the last bit for ~0.1% of ``x``."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        function_type = ir.FunctionType(ir.DoubleType(), [ir.DoubleType(), ir.DoubleType()])
        function = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, function_type, "pow")
        function.attributes.add("nobuiltin")
        return builder.call(function, args)
    return types.float64(types.float64, types.float64), codegen


_c_pow = cast(Callable[[float, float], float], _libm_pow)
"""``_libm_pow`` as what it computes, for the type checker."""


@njit(cache=CACHE)
def scale_floor(resolution: float, level: float) -> float:
    """:func:`~detectors.extremes.scale_floor`."""
    return _max(_max(resolution, 1e-6 * abs(level)), 1e-300)


@njit(cache=CACHE)
def shift_evidence(cusum: float) -> float:
    """:func:`~detectors.adaptive.shift_evidence`."""
    b = cusum + _SIEGMUND
    if b > 50.0:
        return (b + math.log1p(-(b + 1.0) * math.exp(-b))) / _LN10
    return math.log10(math.expm1(b) - b)


@njit(cache=CACHE)
def _score(evidence: float, threshold: float) -> float:
    if evidence <= 0.0:
        return 0.0
    ratio = evidence / threshold
    return ratio / (1.0 + ratio)


@njit(cache=CACHE)
def _per_point(block_share: float, per_block: float) -> float:
    if block_share >= 1.0:
        return 1.0
    return -math.expm1(math.log1p(-block_share) / per_block)


@njit(cache=CACHE)
def _middle(ordered: Floats) -> float:
    """Median of sorted numbers (0 for none, as :func:`detectors.extremes._median`)."""
    n = len(ordered)
    if n == 0:
        return 0.0
    half = n // 2
    return float(ordered[half] if n % 2 else 0.5 * (ordered[half - 1] + ordered[half]))


# --- block extremes: BlockExtremes over (blocks, current, shape) at [row, memory] -----------

@njit(cache=CACHE)
def memory_reset(blocks: Floats, current: Floats, shape: Ints, row: int, m: int) -> None:
    """An empty memory (``BlockExtremes()``)."""
    shape[row, m, M_BLOCKS] = 0
    shape[row, m, M_FILLED] = 0
    shape[row, m, M_LENGTH] = FIRST_BLOCK
    _empty_current(current, row, m)


@njit(cache=CACHE)
def _empty_current(current: Floats, row: int, m: int) -> None:
    half = _FIELDS[m] // 2
    for k in range(_FIELDS[m]):
        current[row, m, k] = -_INF if k < half else _INF
    current[row, m, SUMMARY] = math.nan


@njit(cache=CACHE, inline="always")
def _blocks_of(blocks: Floats, row: int, m: int) -> Floats:
    """Memory ``m``'s complete blocks on ``row``: (block, number) from ``blocks``."""
    return blocks[row, _PLANE[m], :, _OFFSET[m]:]


@njit(cache=CACHE)
def memory_count(shape: Ints, row: int, m: int) -> int:
    """Points in memory (``BlockExtremes.count``)."""
    return int(shape[row, m, M_BLOCKS] * shape[row, m, M_LENGTH] + shape[row, m, M_FILLED])


@njit(cache=CACHE)
def _memory_len(shape: Ints, row: int, m: int) -> int:
    return int(shape[row, m, M_BLOCKS] + (1 if shape[row, m, M_FILLED] else 0))


@njit(cache=CACHE)
def memory_learn(blocks: Floats, current: Floats, shape: Ints, row: int, m: int,
                 value: float) -> None:
    """``BlockExtremes.learn``: the value into the current block, closing it when full."""
    single = _SINGLE[m]
    if _FIELDS[m] == 4:
        if value > current[row, m, 0]:
            current[row, m, 1] = current[row, m, 0]
            current[row, m, 0] = _stored(value, single)
        elif value > current[row, m, 1]:
            current[row, m, 1] = _stored(value, single)
        if value < current[row, m, 2]:
            current[row, m, 3] = current[row, m, 2]
            current[row, m, 2] = _stored(value, single)
        elif value < current[row, m, 3]:
            current[row, m, 3] = _stored(value, single)
    else:
        if value > current[row, m, 0]:
            current[row, m, 0] = _stored(value, single)
        if value < current[row, m, 1]:
            current[row, m, 1] = _stored(value, single)
    shape[row, m, M_FILLED] += 1
    if shape[row, m, M_FILLED] >= shape[row, m, M_LENGTH]:
        _memory_close(blocks, current, shape, row, m)


@njit(cache=CACHE)
def _memory_close(blocks: Floats, current: Floats, shape: Ints, row: int, m: int) -> None:
    """Append the current block; merge pairwise while growing, else drop the oldest."""
    mine = _blocks_of(blocks, row, m)
    fields = _FIELDS[m]
    whole = shape[row, m, M_BLOCKS]
    for k in range(fields):
        mine[whole, k] = current[row, m, k]
    whole += 1
    _empty_current(current, row, m)
    shape[row, m, M_FILLED] = 0
    if whole >= _CAPACITY[m] and shape[row, m, M_LENGTH] < LONGEST_BLOCK:
        for i in range(whole // 2):
            a, b = 2 * i, 2 * i + 1
            if fields == 4:
                tops = np.sort(np.array([mine[a, 0], mine[a, 1],
                                         mine[b, 0], mine[b, 1]]))
                bottoms = np.sort(np.array([mine[a, 2], mine[a, 3],
                                            mine[b, 2], mine[b, 3]]))
                mine[i, 0] = tops[3]
                mine[i, 1] = tops[2]
                mine[i, 2] = bottoms[0]
                mine[i, 3] = bottoms[1]
            else:
                mine[i, 0] = _max(mine[a, 0], mine[b, 0])
                mine[i, 1] = _min(mine[a, 1], mine[b, 1])
        whole //= 2
        shape[row, m, M_LENGTH] *= 2
    elif whole > _CAPACITY[m]:
        for i in range(whole - 1):
            for k in range(fields):
                mine[i, k] = mine[i + 1, k]
        whole -= 1
    shape[row, m, M_BLOCKS] = whole


@njit(cache=CACHE)
def _recent_blocks(shape: Ints, row: int, m: int, points: int) -> int:
    """Complete blocks holding the last ``points`` points (after the current block's)."""
    whole, length = shape[row, m, M_BLOCKS], shape[row, m, M_LENGTH]
    return int(min(whole, max(0, -(-(points - shape[row, m, M_FILLED]) // length))))


@njit(cache=CACHE)
def memory_keep_recent(blocks: Floats, current: Floats, shape: Ints, row: int, m: int,
                       points: int) -> None:
    """``BlockExtremes.keep_recent``: forget the blocks that ended over ``points`` ago."""
    mine = _blocks_of(blocks, row, m)
    whole = shape[row, m, M_BLOCKS]
    keep = _recent_blocks(shape, row, m, points)
    for i in range(keep):
        for k in range(_FIELDS[m]):
            mine[i, k] = mine[whole - keep + i, k]
    shape[row, m, M_BLOCKS] = keep
    current[row, m, SUMMARY] = math.nan


@njit(cache=CACHE)
def memory_shift_recent(blocks: Floats, current: Floats, shape: Ints, row: int, m: int,
                        points: int, delta: float) -> None:
    """``BlockExtremes.shift_recent``: move the extremes of the last ``points`` points."""
    mine = _blocks_of(blocks, row, m)
    fields, single = _FIELDS[m], _SINGLE[m]
    if shape[row, m, M_FILLED]:
        for k in range(fields):
            current[row, m, k] = _stored(current[row, m, k] + delta, single)
    whole = shape[row, m, M_BLOCKS]
    for i in range(whole - _recent_blocks(shape, row, m, points), whole):
        for k in range(fields):
            mine[i, k] = _stored(mine[i, k] + delta, single)
    current[row, m, SUMMARY] = math.nan


@njit(cache=CACHE)
def _memory_refresh(blocks: Floats, current: Floats, shape: Ints, row: int, m: int) -> None:
    """``BlockExtremes._refreshed``: the summary of the complete blocks, if stale."""
    if current[row, m, SUMMARY] == current[row, m, SUMMARY]:  # not NaN: fresh
        return
    mine = _blocks_of(blocks, row, m)
    fields, whole, single = _FIELDS[m], shape[row, m, M_BLOCKS], _SINGLE[m]
    low = fields // 2
    maxima = np.sort(mine[:whole, 0].copy())
    minima = np.sort(mine[:whole, low].copy())
    theta_high = theta_low = 0.0
    if fields == 4:
        gaps_high = np.empty(whole)
        gaps_low = np.empty(whole)
        n_high = n_low = 0
        for i in range(whole):
            if mine[i, 1] > -_INF:
                gaps_high[n_high] = mine[i, 0] - mine[i, 1]
                n_high += 1
            if mine[i, 3] < _INF:
                gaps_low[n_low] = mine[i, 3] - mine[i, 2]
                n_low += 1
        theta_high = _middle(np.sort(gaps_high[:n_high]))
        theta_low = _middle(np.sort(gaps_low[:n_low]))
    at = SUMMARY
    current[row, m, at] = maxima[whole - 1] if whole else -_INF
    current[row, m, at + 1] = maxima[whole - 2] if whole > 1 else -_INF
    current[row, m, at + 2] = minima[0] if whole else _INF
    current[row, m, at + 3] = minima[1] if whole > 1 else _INF
    current[row, m, at + 4] = _stored(theta_high / _LN2, single)
    current[row, m, at + 5] = _stored(theta_low / _LN2, single)


@njit(cache=CACHE)
def memory_anchors(blocks: Floats, current: Floats, shape: Ints, row: int,
                   m: int) -> tuple[bool, float, float]:
    """``BlockExtremes.anchors``: (whether there are any, lower, upper)."""
    if _memory_len(shape, row, m) < 2:
        return False, -_INF, _INF
    _memory_refresh(blocks, current, shape, row, m)
    at = SUMMARY
    first, second = current[row, m, at], current[row, m, at + 1]
    lowest, next_lowest = current[row, m, at + 2], current[row, m, at + 3]
    top, bottom = current[row, m, 0], current[row, m, _FIELDS[m] // 2]
    high = first if top > first else _max(second, top)
    low = lowest if bottom < lowest else _min(next_lowest, bottom)
    return True, low, high


@njit(cache=CACHE)
def memory_anchor_evidence(shape: Ints, row: int, m: int) -> float:
    """``BlockExtremes.anchor_evidence``."""
    blocks = float(_memory_len(shape, row, m))
    if blocks < 2.0:
        return 0.0
    return -math.log10(_per_point(ANCHOR_RANK / blocks, memory_count(shape, row, m) / blocks))


@njit(cache=CACHE)
def _memory_reaching(blocks: Floats, current: Floats, shape: Ints, row: int, m: int,
                     value: float) -> float:
    mine = _blocks_of(blocks, row, m)
    low = _FIELDS[m] // 2
    above = 1 if current[row, m, 0] >= value else 0
    below = 1 if current[row, m, low] <= value else 0
    for i in range(shape[row, m, M_BLOCKS]):
        if mine[i, 0] >= value:
            above += 1
        if mine[i, low] <= value:
            below += 1
    return _max(0.5, min(above, below) - 0.5)


@njit(cache=CACHE)
def memory_tail(blocks: Floats, current: Floats, shape: Ints, row: int, m: int, value: float,
                visibility: float, floor: float, target: float, widen: bool, inside_low: float,
                inside_high: float) -> tuple[float, int, float, float, float]:
    """``BlockExtremes.tail`` with a target: (evidence, side, beyond, upper, lower); with
    ``widen`` the anchors include ``inside_low``..``inside_high``."""
    found, low, high = memory_anchors(blocks, current, shape, row, m)
    if not found:
        return 0.0, 0, 0.0, _INF, -_INF
    if widen:
        low, high = _min(low, inside_low), _max(high, inside_high)
    span = high - low
    count = float(_memory_len(shape, row, m))
    per_block = memory_count(shape, row, m) / count
    base = memory_anchor_evidence(shape, row, m)
    scale_high = _max(_max(current[row, m, SUMMARY + 4], visibility * span), floor)
    scale_low = _max(_max(current[row, m, SUMMARY + 5], visibility * span), floor)
    side, beyond = 0, 0.0
    if value > high:
        beyond, side = (value - high) / scale_high, 1
        evidence = base + beyond / _LN10
    elif value < low:
        beyond, side = (low - value) / scale_low, -1
        evidence = base + beyond / _LN10
    else:
        evidence = -math.log10(_per_point(
            _memory_reaching(blocks, current, shape, row, m, value) / count, per_block))
    margin = _max(0.0, target - base) * _LN10
    return evidence, side, beyond, high + margin * scale_high, low - margin * scale_low


@njit(cache=CACHE)
def memory_beyond(blocks: Floats, current: Floats, shape: Ints, row: int, m: int, value: float,
                  visibility: float, floor: float) -> float:
    """``BlockExtremes.tail(...).beyond``: how far past its anchor ``value`` is, in tail
    scales (the evidence is not needed)."""
    found, low, high = memory_anchors(blocks, current, shape, row, m)
    if not found:
        return 0.0
    span = high - low
    if value > high:
        return (value - high) / _max(_max(current[row, m, SUMMARY + 4], visibility * span), floor)
    if value < low:
        return (low - value) / _max(_max(current[row, m, SUMMARY + 5], visibility * span), floor)
    return 0.0


# --- the baseline: Baseline over floats/ints/pending/start at row ----------------------------

@njit(cache=CACHE)
def baseline_reset(floats: Floats, ints: Ints, row: int) -> None:
    """``Baseline()``."""
    for column in (B_MEAN, B_SPREAD, B_LAGGED_SQUARE, B_LAGGED_PRODUCT, B_LAST_Z):
        floats[row, column] = 0.0
    for column in (B_COUNT, B_HEAD, B_PENDING, B_HELD):
        ints[row, column] = 0


@njit(cache=CACHE)
def baseline_centre(floats: Floats, ints: Ints, start: Floats, row: int, value: float) -> float:
    """``Baseline.centre``: the mean, or the median of the first points held."""
    if ints[row, B_COUNT]:
        return float(floats[row, B_MEAN])
    held = ints[row, B_HELD]
    if not held:
        return value
    return _middle(np.sort(start[row, :held].copy()))


@njit(cache=CACHE)
def baseline_sigma(floats: Floats, row: int, floor: float) -> float:
    """``Baseline.sigma``."""
    return _max(_MAD_TO_SIGMA * floats[row, B_SPREAD], floor)


@njit(cache=CACHE)
def baseline_autocorrelation(floats: Floats, row: int) -> float:
    """``Baseline.autocorrelation``."""
    if floats[row, B_LAGGED_SQUARE] <= 0.0:
        return 0.0
    rho = floats[row, B_LAGGED_PRODUCT] / floats[row, B_LAGGED_SQUARE]
    return 0.0 if rho < 0.0 else 0.995 if rho > 0.995 else rho


@njit(cache=CACHE)
def baseline_learn(floats: Floats, ints: Ints, row: int, x: float, screen: bool) -> None:
    """``Baseline._learn``."""
    ints[row, B_COUNT] += 1
    count = ints[row, B_COUNT]
    if count == 1:
        floats[row, B_MEAN] = x
        return
    mean = floats[row, B_MEAN]
    weight = 1.0 / min(count, HORIZON)
    sigma = baseline_sigma(floats, row, scale_floor(0.0, mean))
    deviation = x - mean
    if screen:
        bound = (WINSOR if count > ints[row, WARMUP] else WARMUP_SCREEN) * sigma
        deviation = -bound if deviation < -bound else bound if deviation > bound else deviation
    floats[row, B_MEAN] = mean + weight * deviation
    floats[row, B_SPREAD] += weight * (abs(deviation) - floats[row, B_SPREAD])
    z = deviation / sigma
    z = Z_CLIP if z > Z_CLIP else -Z_CLIP if z < -Z_CLIP else z
    last_z = floats[row, B_LAST_Z]
    floats[row, B_LAGGED_SQUARE] += weight * (last_z * last_z - floats[row, B_LAGGED_SQUARE])
    floats[row, B_LAGGED_PRODUCT] += weight * (last_z * z - floats[row, B_LAGGED_PRODUCT])
    floats[row, B_LAST_Z] = z


@njit(cache=CACHE)
def robust_start(points: Floats) -> Floats:
    """:func:`~detectors.stats.robust_start`."""
    ordered = np.sort(points)
    centre = _middle(ordered)
    deviations = np.sort(np.abs(points - centre))
    scale = _MAD_SCALE * _middle(deviations)
    if scale == 0.0:
        others = deviations[deviations > 0.0][:-1]
        scale = _middle(others) if len(others) else 1e-6 * abs(centre)
    bound = WARMUP_SCREEN * scale
    out = np.empty(len(points))
    for i in range(len(points)):
        v = points[i]
        out[i] = centre - bound if v < centre - bound else centre + bound \
            if v > centre + bound else v
    return out


@njit(cache=CACHE)
def baseline_offer(floats: Floats, ints: Ints, pending: Singles, start: Floats, row: int,
                   value: float) -> None:
    """``Baseline.offer``: hold the first points, then learn each :data:`LAG` points late."""
    if not ints[row, B_COUNT]:
        held = ints[row, B_HELD]
        start[row, held] = value
        held += 1
        ints[row, B_HELD] = held
        if held >= min(START_POINTS, ints[row, WARMUP]):
            screened = robust_start(start[row, :held].copy())
            for i in range(held):
                baseline_learn(floats, ints, row, screened[i], False)
            ints[row, B_HELD] = 0
        return
    # the ring keeps single precision, as Baseline.pending: a point waits rounded
    head, length = ints[row, B_HEAD], ints[row, B_PENDING]
    if length + 1 > LAG or ints[row, B_COUNT] < LAG:  # append, then learn the oldest
        oldest = np.float64(pending[row, head] if length else np.float32(value))
        if length:
            pending[row, (head + length) % LAG] = value
            ints[row, B_HEAD] = (head + 1) % LAG
        baseline_learn(floats, ints, row, oldest, True)
    else:
        pending[row, (head + length) % LAG] = value
        ints[row, B_PENDING] = length + 1


@njit(cache=CACHE)
def baseline_move(floats: Floats, ints: Ints, row: int, level: float, spread: float) -> None:
    """``Baseline.move``: a re-baseline."""
    floats[row, B_MEAN], floats[row, B_SPREAD] = level, spread
    ints[row, B_COUNT] = min(ints[row, B_COUNT], SPAN)
    ints[row, B_HEAD] = ints[row, B_PENDING] = 0


# --- the seasonal profile: SeasonalProfile over floats/ints/means at row ----------------------

@njit(cache=CACHE)
def season_bucket(timestamp: float) -> int:
    """``SeasonalProfile._bucket``: the hour of the week, Monday 00:00 UTC first."""
    return int((timestamp + _MONDAY) % _WEEK // _HOUR) % 168


@njit(cache=CACHE)
def _season_daily(floats: Floats, means: Singles, row: int, bucket: int) -> float:
    hour = bucket % 24
    total, seen = 0.0, 0
    for day in range(7):
        mean = np.float64(means[row, day * 24 + hour])
        if mean == mean:
            total += mean
            seen += 1
    return float(total * floats[row, P_UNIT] / seen if seen else floats[row, P_LEVEL])


@njit(cache=CACHE)
def _season_prediction(floats: Floats, means: Singles, row: int, bucket: int,
                       season: int) -> float:
    """``SeasonalProfile._predictions(bucket)[season]``."""
    if season == SEASON_NONE:
        return float(floats[row, P_LEVEL])
    daily = _season_daily(floats, means, row, bucket)
    if season == SEASON_DAY:
        return daily
    weekly = np.float64(means[row, bucket])
    return weekly * floats[row, P_UNIT] if weekly == weekly else daily


@njit(cache=CACHE)
def season_component(floats: Floats, ints: Ints, means: Singles, row: int,
                     bucket: int) -> float:
    """``SeasonalProfile.component`` at the timestamp's ``bucket``."""
    season = ints[row, P_SEASON]
    if season == SEASON_NONE or not ints[row, P_FILLED]:
        return 0.0
    value = _season_prediction(floats, means, row, bucket, season)
    return float(value - floats[row, P_TOTAL] / ints[row, P_FILLED])


@njit(cache=CACHE)
def _season_horizon(floats: Floats, row: int) -> float:
    interval = floats[row, P_INTERVAL]
    if interval <= 0.0:
        return 1000.0
    return _max(1.0, PROFILE_WEEKS * _WEEK / interval)


@njit(cache=CACHE)
def season_period_points(floats: Floats, row: int, season: int) -> int:
    """``SeasonalProfile.period_points``."""
    interval = floats[row, P_INTERVAL]
    if season == SEASON_NONE or interval <= 0.0:
        return 0
    return int(round((_WEEK if season == SEASON_WEEK else _DAY) / interval))


@njit(cache=CACHE)
def _season_fit_unit(floats: Floats, means: Singles, row: int, value: float) -> None:
    if floats[row, P_UNIT] == 0.0:
        floats[row, P_UNIT] = math.ldexp(1.0, math.frexp(value)[1]) if value else 1.0
    while abs(value) > math.ldexp(floats[row, P_UNIT], 96):
        floats[row, P_UNIT] = math.ldexp(floats[row, P_UNIT], 32)
        for b in range(168):
            mean = np.float64(means[row, b])
            if mean == mean:
                means[row, b] = math.ldexp(mean, -32)


@njit(cache=CACHE)
def _season_chosen(floats: Floats, ints: Ints, row: int) -> int:
    choice = ints[row, P_CHOICE]
    if choice == 1:
        return SEASON_DAY
    if choice == 2:
        return SEASON_WEEK
    span = floats[row, P_LAST] - floats[row, P_FIRST]
    level = floats[row, P_ERROR]
    daily = floats[row, P_ERROR + SEASON_DAY]
    weekly = floats[row, P_ERROR + SEASON_WEEK]
    best, error = SEASON_NONE, level
    if span >= 2 * _DAY and daily < error:
        best, error = SEASON_DAY, daily
    if span >= 2 * _WEEK and weekly < WEEKLY_GAIN * error:
        best, error = SEASON_WEEK, weekly
    if error <= EXPLAINED * level:
        return best
    season = ints[row, P_SEASON]
    if season != SEASON_NONE and floats[row, P_ERROR + season] <= KEEP * level:
        return int(season)
    return SEASON_NONE


@njit(cache=CACHE)
def season_learn(floats: Floats, ints: Ints, means: Singles, row: int, value: float,
                 timestamp: float, bucket: int) -> None:
    """``SeasonalProfile.learn`` (the timestamp in its ``bucket``): score the three
    predictions, learn, re-choose the season."""
    horizon = _season_horizon(floats, row)
    seen = ints[row, P_SEEN]
    if seen:
        gap = timestamp - floats[row, P_LAST]
        if gap > 0.0:
            floats[row, P_INTERVAL] += (gap - floats[row, P_INTERVAL]) / min(seen, 1000)
        level = floats[row, P_LEVEL]
        daily = _season_daily(floats, means, row, bucket)
        hourly = np.float64(means[row, bucket])
        weekly = hourly * floats[row, P_UNIT] if hourly == hourly else daily
        weight = _min(float(seen), horizon)
        for model, predicted in ((0, level), (1, daily), (2, weekly)):
            error = floats[row, P_ERROR + model]
            squared = _c_pow(value - predicted, 2.0)
            floats[row, P_ERROR + model] = error + (squared - error) / weight
    else:
        floats[row, P_FIRST] = timestamp
    floats[row, P_LAST] = timestamp
    seen += 1
    ints[row, P_SEEN] = seen
    floats[row, P_LEVEL] += (value - floats[row, P_LEVEL]) / _min(float(seen), horizon)
    _season_fit_unit(floats, means, row, value)
    unit = floats[row, P_UNIT]
    old = np.float64(means[row, bucket])
    if old != old:
        means[row, bucket] = value / unit
        floats[row, P_TOTAL] += np.float64(means[row, bucket]) * unit
        ints[row, P_FILLED] += 1
    else:
        means[row, bucket] = old + (value / unit - old) / _season_bucket_points(floats, row)
        floats[row, P_TOTAL] += (np.float64(means[row, bucket]) - old) * unit
    ints[row, P_SEASON] = _season_chosen(floats, ints, row)


@njit(cache=CACHE)
def _season_bucket_points(floats: Floats, row: int) -> float:
    interval = floats[row, P_INTERVAL]
    per_hour = _HOUR / interval if interval > 0.0 else 1.0
    weeks = math.ceil((floats[row, P_LAST] - floats[row, P_FIRST]) / _WEEK + 1e-9)
    return _max(1.0, per_hour * _min(float(weeks), PROFILE_WEEKS))


# --- the detector's step ---------------------------------------------------------------------

@njit(cache=CACHE)
def _excess(blocks: Floats, current: Floats, shape: Ints, row: int, upward: bool) -> float:
    """``AdaptiveDetector._excess``: how much the record of the CUSUM overstates its nominal
    evidence."""
    found, low, high = memory_anchors(blocks, current, shape, row, SHIFTS)
    if not found:
        return 0.0
    anchor = high if upward else -low
    if anchor <= 0.0:
        return 0.0
    return _max(0.0, shift_evidence(anchor) - memory_anchor_evidence(shape, row, SHIFTS))


@njit(cache=CACHE)
def episode_add(floats: Floats, ints: Ints, row: int, value: float, deviation: float,
                quiet: bool) -> None:
    """``Episode.add``."""
    length = ints[row, E_LENGTH] + 1
    ints[row, E_LENGTH] = length
    level = floats[row, E_LEVEL]
    floats[row, E_SPREAD] += (abs(value - level) - floats[row, E_SPREAD]) / length
    floats[row, E_LEVEL] = level + (value - level) / SPAN
    floats[row, E_HIGH] = _max(floats[row, E_HIGH], value)
    floats[row, E_LOW] = _min(floats[row, E_LOW], value)
    back = floats[row, E_NORMAL_LOW] <= deviation <= floats[row, E_NORMAL_HIGH]
    ints[row, E_QUIET] = ints[row, E_QUIET] + 1 if quiet and back else 0


@njit(cache=CACHE)
def _rebaseline(floats: Floats, ints: Ints, blocks: Floats, current: Floats, shape: Ints,
                row: int) -> None:
    """``AdaptiveDetector._rebaseline``: the episode's level and spread are the new normal."""
    spread = floats[row, B_SPREAD]
    length = ints[row, E_LENGTH]
    episode_spread = floats[row, E_SPREAD]
    if not spread / SPREAD_CHANGE < episode_spread < spread * SPREAD_CHANGE:
        memory_keep_recent(blocks, current, shape, row, VALUES, length)
    moved = floats[row, B_MEAN] - floats[row, E_LEVEL] if ints[row, B_COUNT] else 0.0
    memory_shift_recent(blocks, current, shape, row, VALUES, length, moved)
    memory_shift_recent(blocks, current, shape, row, LEVELS, -(-length // SPAN), moved)
    baseline_move(floats, ints, row, floats[row, E_LEVEL], episode_spread)
    ints[row, E_OPEN] = 0
    floats[row, CUSUM_UP] = floats[row, CUSUM_DOWN] = 0.0


@njit(cache=CACHE)
def _restart(floats: Floats, ints: Ints, blocks: Floats, current: Floats, shape: Ints,
             row: int, settle: int) -> None:
    """``AdaptiveDetector._restart``: forget all but the resolution and the profile."""
    for m in range(3):
        memory_reset(blocks, current, shape, row, m)
    baseline_reset(floats, ints, row)
    ints[row, E_OPEN] = 0
    floats[row, CUSUM_UP] = floats[row, CUSUM_DOWN] = 0.0
    floats[row, EWMA] = math.nan
    ints[row, SEEN] = -settle


@njit(cache=CACHE)
def _open_episode(floats: Floats, ints: Ints, row: int, test: int, x: float, low: float,
                  high: float) -> None:
    """``Episode(test, x, spread, (low, high))``."""
    ints[row, E_OPEN], ints[row, E_LENGTH], ints[row, E_QUIET], ints[row, E_TEST] = 1, 1, 0, test
    floats[row, E_LEVEL] = floats[row, E_HIGH] = floats[row, E_LOW] = x
    floats[row, E_SPREAD] = floats[row, B_SPREAD]
    floats[row, E_NORMAL_LOW], floats[row, E_NORMAL_HIGH] = low, high


@njit(cache=CACHE)
def score_point(floats: Floats, ints: Ints, pending: Singles, start: Floats, means: Singles,
                blocks: Floats, current: Floats, shape: Ints, row: int, value: float,
                timestamp: float, out_floats: Floats, out_ints: Ints, j: int) -> bool:
    """``AdaptiveDetector.update`` of one point on ``row``, its result into ``out_*[j]``;
    False (nothing changed) if the point cannot be scored: a value that is not finite, or a
    timestamp that is not on a row with a seasonal profile."""
    has_profile = ints[row, HAS_PROFILE] != 0
    if not math.isfinite(value) or has_profile and not math.isfinite(timestamp):
        return False
    threshold, target = floats[row, THRESHOLD], floats[row, TARGET]
    visibility = floats[row, VISIBILITY]
    component = 0.0
    season = SEASON_NONE
    bucket = 0
    if has_profile:
        season = ints[row, P_SEASON]
        bucket = season_bucket(timestamp)
        component = season_component(floats, ints, means, row, bucket)
    x = value - component
    mean = baseline_centre(floats, ints, start, row, x)
    resolution = floats[row, RESOLUTION]
    floor = scale_floor(0.0 if resolution == _INF else resolution, mean)
    sigma = baseline_sigma(floats, row, floor)
    episode = ints[row, E_OPEN] != 0
    if has_profile and ints[row, B_COUNT]:
        found, low, high = memory_anchors(blocks, current, shape, row, VALUES)
        bound = WARMUP_SCREEN * _max(sigma, high - low if found else 0.0)
        expected = mean + component
        season_learn(floats, ints, means, row,
                     _min(_max(value, expected - bound), expected + bound), timestamp, bucket)

    # the extreme test, against the memory widened by the open episode's extremes
    deviation = x - mean
    extreme, side, _, tail_upper, tail_lower = memory_tail(
        blocks, current, shape, row, VALUES, deviation, visibility, floor, target, episode,
        floats[row, E_LOW] - mean, floats[row, E_HIGH] - mean)

    # the shift test, counting only while the smoothed level is beyond its range
    previous_ewma = floats[row, EWMA]
    ewma = x if math.isnan(previous_ewma) else previous_ewma + (x - previous_ewma) / SPAN
    floats[row, EWMA] = ewma
    z = deviation / sigma
    rho = baseline_autocorrelation(floats, row)
    level_noise = _max(floor, sigma * math.sqrt((1.0 + rho) / ((1.0 - rho) * (2 * SPAN - 1))))
    step = (Z_CLIP if z > Z_CLIP else -Z_CLIP if z < -Z_CLIP else z) \
        * math.sqrt((1.0 - rho) / (1.0 + rho))
    up = _max(0.0, floats[row, CUSUM_UP] + step - REFERENCE)
    down = _max(0.0, floats[row, CUSUM_DOWN] - step - REFERENCE)
    count = ints[row, B_COUNT]
    if not episode and (count < 2 * LAG or ints[row, SEEN] < ints[row, WARMUP]):
        up = down = 0.0  # no test yet: a young baseline, or a warm-up after a season restart
    cusum = up if up > down else down
    shift = 0.0
    counted = 0.0
    if not episode and count >= 2 * LAG and ints[row, SEEN] >= SPAN and memory_beyond(
            blocks, current, shape, row, LEVELS, ewma - mean, visibility, level_noise) >= GATE:
        counted = cusum if up > down else -cusum
        shift = shift_evidence(cusum) - _excess(blocks, current, shape, row, up > down)

    evidence = _max(extreme, shift) - _LOG_TESTS
    opened = escalated = resolved = rebaselined = warming = False
    test = 0
    fired = 0
    fired_statistic = fired_limit = 0.0
    centre = mean + component
    lower = tail_lower + mean + component
    upper = tail_upper + mean + component
    if not episode:
        warming = ints[row, SEEN] < ints[row, WARMUP]
        if not warming and evidence >= threshold:
            opened = True
            test = SHIFT if shift >= extreme else side
            found, low, high = memory_anchors(blocks, current, shape, row, VALUES)
            _open_episode(floats, ints, row, test, x, low, high)
            episode = True
            if test == SHIFT:
                fired = SHIFT if up > down else -SHIFT
                fired_statistic, fired_limit = cusum, floats[row, ALARM_CUSUM]
                up = down = 0.0
            else:
                fired = EXTREME_HIGH if test == EXTREME_HIGH else -EXTREME_HIGH
                fired_statistic = value
                fired_limit = upper if value >= centre else lower
    else:
        if ints[row, E_TEST] == SHIFT and side and extreme >= target \
                and ints[row, E_LENGTH] >= CLEAR_AFTER:
            escalated = True
            test = side
            ints[row, E_TEST] = side
            fired = EXTREME_HIGH if test == EXTREME_HIGH else -EXTREME_HIGH
            fired_statistic = value
            fired_limit = upper if value >= centre else lower
        episode_add(floats, ints, row, x, deviation, cusum < floats[row, QUIET_CUSUM])
        resolved = ints[row, E_QUIET] >= CLEAR_AFTER
        rebaselined = not resolved and ints[row, E_LENGTH] >= ints[row, REBASELINE_AFTER]
    floats[row, CUSUM_UP], floats[row, CUSUM_DOWN] = up, down
    if (not episode or opened) and count >= 2 * LAG:
        memory_learn(blocks, current, shape, row, SHIFTS, counted)
    length = ints[row, E_LENGTH] if episode else 0

    # learn: the memories everything, the baseline what is not in an episode
    ints[row, SEEN] += 1
    memory_learn(blocks, current, shape, row, VALUES, deviation)
    if ints[row, SEEN] % SPAN == 0:
        memory_learn(blocks, current, shape, row, LEVELS, ewma - mean)
    previous = floats[row, PREVIOUS]
    if not math.isnan(previous) and x != previous:
        floats[row, RESOLUTION] = _min(floats[row, RESOLUTION], abs(x - previous))
    floats[row, PREVIOUS] = x
    if not episode:
        baseline_offer(floats, ints, pending, start, row, x)
    if resolved:
        ints[row, E_OPEN] = 0
        floats[row, CUSUM_UP] = floats[row, CUSUM_DOWN] = 0.0
    elif rebaselined:
        _rebaseline(floats, ints, blocks, current, shape, row)
    if has_profile and (ints[row, P_SEASON] == SEASON_NONE) != (season == SEASON_NONE):
        _restart(floats, ints, blocks, current, shape, row,
                 max(season_period_points(floats, row, season),
                     season_period_points(floats, row, ints[row, P_SEASON])))

    score = _score(evidence, threshold)
    if warming or (length and not (opened or escalated)):
        score = _min(score, BELOW_ALERT)
    out_floats[j, O_SCORE] = score
    out_floats[j, O_CENTRE] = centre
    out_floats[j, O_LOWER] = lower
    out_floats[j, O_UPPER] = upper
    out_floats[j, O_Z] = z
    out_floats[j, O_EXTREME] = _max(0.0, extreme - _LOG_TESTS)
    out_floats[j, O_SHIFT] = _max(0.0, shift - _LOG_TESTS)
    out_floats[j, O_EXTREME_SCORE] = _score(extreme - _LOG_TESTS, threshold)
    out_floats[j, O_SHIFT_SCORE] = _score(shift - _LOG_TESTS, threshold)
    out_floats[j, O_CUSUM] = cusum
    out_floats[j, O_STATISTIC] = fired_statistic
    out_floats[j, O_LIMIT] = fired_limit
    out_ints[j, O_ANOMALY] = opened or escalated
    out_ints[j, O_N] = memory_count(shape, row, VALUES)
    out_ints[j, O_RESOLVED] = resolved
    out_ints[j, O_REBASELINED] = rebaselined
    out_ints[j, O_TEST] = test
    out_ints[j, O_SEASON] = season
    out_ints[j, O_EPISODE] = length
    out_ints[j, O_FIRED] = fired
    return True


@njit(cache=CACHE)
def score_points(floats: Floats, ints: Ints, pending: Singles, start: Floats, means: Singles,
                 blocks: Floats, current: Floats, shape: Ints, rows: Ints, values: Floats,
                 timestamps: Floats, out_floats: Floats, out_ints: Ints) -> int:
    """Score and learn each point in order on its row; the points done (all, or the index of
    the first that cannot be scored)."""
    for j in range(len(rows)):
        if not score_point(floats, ints, pending, start, means, blocks, current, shape,
                           rows[j], values[j], timestamps[j], out_floats, out_ints, j):
            return j
    return len(rows)


# --- the on-disk cache and the constants frozen in it ------------------------------------------

_CONSTANTS = (BELOW_ALERT, CLEAR_AFTER, EXTREME_HIGH, GATE, HORIZON, LAG, LEVEL_BLOCKS,
              REFERENCE, SHIFT, SPAN, SPREAD_CHANGE, WINSOR, Z_CLIP, ANCHOR_RANK, BLOCKS,
              FIRST_BLOCK, LONGEST_BLOCK, EXPLAINED, KEEP, PROFILE_WEEKS, SEASON_NONE, SEASON_DAY,
              SEASON_WEEK, WEEKLY_GAIN, START_POINTS, WARMUP_SCREEN)
"""The other modules' constants the compiled functions read: numba freezes them into the
machine code, and its cache is keyed on this file alone."""


@njit(cache=CACHE)
def _compiled_constants() -> tuple[float, ...]:
    return (BELOW_ALERT, CLEAR_AFTER, EXTREME_HIGH, GATE, HORIZON, LAG, LEVEL_BLOCKS,
            REFERENCE, SHIFT, SPAN, SPREAD_CHANGE, WINSOR, Z_CLIP, ANCHOR_RANK, BLOCKS,
            FIRST_BLOCK, LONGEST_BLOCK, EXPLAINED, KEEP, PROFILE_WEEKS, SEASON_NONE, SEASON_DAY,
            SEASON_WEEK, WEEKLY_GAIN, START_POINTS, WARMUP_SCREEN)


def _forget_stale_cache() -> None:
    """Empty the on-disk cache of this module's functions when it was compiled with other
    constants (``detectors/adaptive.py`` and friends were tuned since): they compile again."""
    if not CACHE or tuple(map(float, _compiled_constants())) == tuple(map(float, _CONSTANTS)):
        return
    for value in list(globals().values()):
        cache = getattr(value, "_cache", None)  # a numba dispatcher's on-disk cache
        if cache is not None and getattr(value, "py_func", None) is not None:
            cache.flush()
    _compiled_constants.recompile()  # cached again, with the constants the others will have


_forget_stale_cache()


# --- rows from and to AdaptiveDetector.state_dict, and results as PointResult ---------------

@dataclass(frozen=True, slots=True)
class AdaptiveResults:
    """Per point of a :meth:`AdaptiveKernel.score_points` call, what ``PointResult`` carries:
    ``floats`` and ``ints`` (columns ``O_*``) and the row each point was scored on."""

    rows: Ints
    floats: Floats
    ints: Ints

    @property
    def score(self) -> Floats:
        return self.floats[:, O_SCORE]

    @property
    def anomaly(self) -> npt.NDArray[np.bool_]:
        flags: npt.NDArray[np.bool_] = self.ints[:, O_ANOMALY] != 0
        return flags

    @property
    def resolved(self) -> npt.NDArray[np.bool_]:
        flags: npt.NDArray[np.bool_] = self.ints[:, O_RESOLVED] != 0
        return flags

    @property
    def rebaselined(self) -> npt.NDArray[np.bool_]:
        flags: npt.NDArray[np.bool_] = self.ints[:, O_REBASELINED] != 0
        return flags

    @property
    def episode(self) -> Ints:
        """The open episode's length after the point (0: none)."""
        return self.ints[:, O_EPISODE]

    @property
    def fired(self) -> Ints:
        """What fired: 1 extreme high, −1 extreme low, 2 shift up, −2 shift down (0 none)."""
        return self.ints[:, O_FIRED]


class AdaptiveKernel:
    """Adaptive detectors' states, one row per series, and their compiled step (see the
    module docstring)."""

    def __init__(self, capacity: int = 0) -> None:
        self.floats = np.zeros((0, FLOAT_COLUMNS))
        self.ints = np.zeros((0, INT_COLUMNS), np.int64)
        self.pending = np.zeros((0, LAG), np.float32)
        self.start = np.zeros((0, START_POINTS))
        self.means = np.zeros((0, 168), np.float32)
        self.blocks = np.zeros((0, 2, int(_CAPACITY.max()) + 1, 4))
        self.current = np.zeros((0, 3, SUMMARY + 6))
        self.shape = np.zeros((0, 3, 3), np.int64)
        self.grow(capacity)

    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return len(self.floats)

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` rows (existing rows keep their state)."""
        for name in ("floats", "ints", "pending", "start", "means", "blocks", "current",
                     "shape"):
            column = getattr(self, name)
            if capacity > len(column):
                grown = np.zeros((capacity, *column.shape[1:]), column.dtype)
                grown[:len(column)] = column
                setattr(self, name, grown)

    def score_points(self, rows: npt.ArrayLike, values: npt.ArrayLike,
                     timestamps: npt.ArrayLike) -> AdaptiveResults:
        """Score and learn each point in order on its row (``AdaptiveDetector.update``)."""
        row_array = np.ascontiguousarray(rows, np.int64)
        value_array = np.ascontiguousarray(values, np.float64)
        time_array = np.ascontiguousarray(timestamps, np.float64)
        count = len(row_array)
        if len(value_array) != count or len(time_array) != count:
            raise ValueError(f"need as many values and timestamps as rows, got {count}, "
                             f"{len(value_array)}, {len(time_array)}")
        if count and not 0 <= int(row_array.min()) <= int(row_array.max()) < self.capacity:
            raise ValueError(f"rows must be in 0..{self.capacity - 1}")
        out_floats = np.empty((count, OUT_FLOATS))
        out_ints = np.empty((count, OUT_INTS), np.int64)
        done = score_points(self.floats, self.ints, self.pending, self.start, self.means,
                            self.blocks, self.current, self.shape, row_array, value_array,
                            time_array, out_floats, out_ints)
        if done < count:
            raise ValueError(f"point {done} cannot be scored: value {value_array[done]!r}, "
                             f"timestamp {time_array[done]!r} (both must be finite)")
        return AdaptiveResults(row_array, out_floats, out_ints)

    def point_result(self, results: AdaptiveResults, j: int) -> PointResult:
        """Point ``j`` of ``results`` as the ``PointResult`` ``AdaptiveDetector.update`` gave."""
        f, i = results.floats[j], results.ints[j]
        row = int(results.rows[j])
        threshold, alarm = float(self.floats[row, THRESHOLD]), float(self.floats[row, ALARM_CUSUM])
        details = {"extreme": float(f[O_EXTREME]), "shift": float(f[O_SHIFT]),
                   "threshold": threshold, "extreme_score": float(f[O_EXTREME_SCORE]),
                   "shift_score": float(f[O_SHIFT_SCORE]), "cusum": float(f[O_CUSUM]),
                   "cusum_limit": alarm, "test": float(i[O_TEST]),
                   "season": float(i[O_SEASON]), "episode": float(i[O_EPISODE])}
        fired = int(i[O_FIRED])
        explanation = None if not fired else Explanation(
            FIRED_NAMES[fired], float(f[O_STATISTIC]), float(f[O_LIMIT]))
        return PointResult(float(f[O_SCORE]), bool(i[O_ANOMALY]), float(f[O_CENTRE]),
                           float(f[O_LOWER]), float(f[O_UPPER]), float(f[O_Z]), int(i[O_N]),
                           resolved=bool(i[O_RESOLVED]), rebaselined=bool(i[O_REBASELINED]),
                           details=details, explanation=explanation)

    # --- state ----------------------------------------------------------------------------

    @staticmethod
    def fits(state: Mapping[str, Any]) -> bool:
        """Whether a detector's state has the memories the kernel keeps (any state of
        today's ``AdaptiveDetector`` does)."""
        return all({key: state[name].get(key) for key in expected} == expected
                   for name, expected in zip(_MEMORY_NAMES, _MEMORY, strict=True))

    def load(self, row: int, state: Mapping[str, Any]) -> None:
        """Put the detector saved in ``state`` (``AdaptiveDetector.state_dict``) on ``row``;
        ``ValueError`` for a state the object path would refuse, or memories of another
        shape than the detector's own."""
        AdaptiveDetector.from_state(state)  # the object path's checks
        f, i = self.floats[row], self.ints[row]
        f[:] = 0.0
        i[:] = 0
        threshold, target, alarm, quiet = _limits(float(state["alpha"]))
        f[THRESHOLD], f[TARGET], f[ALARM_CUSUM], f[QUIET_CUSUM] = threshold, target, alarm, quiet
        f[ALPHA] = float(state["alpha"])
        f[VISIBILITY] = float(state["visibility"])
        i[WARMUP], i[REBASELINE_AFTER] = int(state["warmup"]), int(state["rebaseline_after"])
        season = state["season"]
        i[HAS_PROFILE] = season is not None
        i[P_CHOICE] = _CHOICE_CODES.get(season, 0) if season is not None else 0
        self._load_profile(row, state["profile"])
        for m, name in enumerate(_MEMORY_NAMES):
            self._load_memory(row, m, state[name])
        baseline = state["baseline"]
        for column, key in ((B_MEAN, "mean"), (B_SPREAD, "spread"),
                            (B_LAGGED_SQUARE, "lagged_square"),
                            (B_LAGGED_PRODUCT, "lagged_product"), (B_LAST_Z, "last_z")):
            f[column] = float(baseline[key])
        i[B_COUNT] = int(baseline["count"])
        pending = [float(v) for v in baseline["pending"]]
        self.pending[row, :len(pending)] = pending
        i[B_HEAD], i[B_PENDING] = 0, len(pending)
        held = [float(v) for v in baseline.get("start", [])]
        self.start[row, :len(held)] = held
        i[B_HELD] = len(held)
        episode = state["episode"]
        if episode is not None:
            i[E_OPEN] = 1
            i[E_LENGTH], i[E_QUIET], i[E_TEST] = (int(episode[key]) for key in
                                                  ("length", "quiet", "test"))
            for column, key in ((E_LEVEL, "level"), (E_SPREAD, "spread"), (E_HIGH, "high"),
                                (E_LOW, "low"), (E_NORMAL_LOW, "normal_low"),
                                (E_NORMAL_HIGH, "normal_high")):
                f[column] = float(episode[key])
        f[CUSUM_UP], f[CUSUM_DOWN] = (float(v) for v in state["cusum"])
        f[EWMA] = math.nan if state["ewma"] is None else float(state["ewma"])
        f[PREVIOUS] = math.nan if state["previous"] is None else float(state["previous"])
        f[RESOLUTION] = _INF if state["resolution"] is None else float(state["resolution"])
        i[SEEN] = int(state["seen"])

    def _load_profile(self, row: int, profile: Mapping[str, Any] | None) -> None:
        f, i = self.floats[row], self.ints[row]
        self.means[row] = math.nan
        if profile is None:
            return
        i[P_CHOICE] = _CHOICE_CODES[profile["choice"]]
        i[P_SEASON] = int(profile["season"])
        self.means[row] = [math.nan if v is None else float(v) for v in profile["means"]]
        f[P_UNIT], f[P_TOTAL], f[P_LEVEL] = (float(profile[key]) for key in
                                             ("unit", "total", "level"))
        i[P_FILLED], i[P_SEEN] = int(profile["filled"]), int(profile["seen"])
        f[P_ERROR:P_ERROR + 3] = [float(v) for v in profile["errors"]]
        f[P_INTERVAL] = float(profile["interval"])
        f[P_FIRST] = math.nan if profile["first"] is None else float(profile["first"])
        f[P_LAST] = math.nan if profile["last"] is None else float(profile["last"])

    def _load_memory(self, row: int, m: int, memory: Mapping[str, Any]) -> None:
        expected = _MEMORY[m]
        found = {key: memory[key] for key in expected}
        if found != expected:
            raise ValueError(f"adaptive kernel: the {_MEMORY_NAMES[m]} memory is {found!r}, "
                             f"the kernel keeps {expected!r}")
        fields = int(_FIELDS[m])
        half = fields // 2
        saved = memory["blocks"]
        whole = len(saved) // fields
        blocks = self.blocks[row, _PLANE[m], :, _OFFSET[m]:_OFFSET[m] + fields]
        for k, value in enumerate(saved):
            blocks[k // fields, k % fields] = _saved_extreme(value, k % fields < half)
        current = self.current[row, m]
        current[:] = 0.0
        for k, value in enumerate(memory["current"]):
            current[k] = _saved_extreme(value, k < half)
        current[SUMMARY] = math.nan
        self.shape[row, m] = (whole, int(memory["filled"]), int(memory["block_length"]))

    def export(self, row: int) -> dict[str, Any]:
        """The ``AdaptiveDetector.state_dict`` of the detector on ``row``."""
        f, i = self.floats[row], self.ints[row]
        season = PROFILE_CHOICES[int(i[P_CHOICE])] if i[HAS_PROFILE] else None
        episode = None
        if i[E_OPEN]:
            episode = {"length": int(i[E_LENGTH]), "quiet": int(i[E_QUIET]),
                       "test": int(i[E_TEST]), "level": float(f[E_LEVEL]),
                       "spread": float(f[E_SPREAD]), "high": float(f[E_HIGH]),
                       "low": float(f[E_LOW]), "normal_low": float(f[E_NORMAL_LOW]),
                       "normal_high": float(f[E_NORMAL_HIGH])}
        head, length = int(i[B_HEAD]), int(i[B_PENDING])
        baseline = {"mean": float(f[B_MEAN]), "spread": float(f[B_SPREAD]),
                    "lagged_square": float(f[B_LAGGED_SQUARE]),
                    "lagged_product": float(f[B_LAGGED_PRODUCT]), "last_z": float(f[B_LAST_Z]),
                    "count": int(i[B_COUNT]),
                    "pending": [float(self.pending[row, (head + k) % LAG])
                                for k in range(length)],
                    "start": [float(v) for v in self.start[row, :int(i[B_HELD])]]}
        return {
            "alpha": float(f[ALPHA]), "season": season, "visibility": float(f[VISIBILITY]),
            "warmup": int(i[WARMUP]), "rebaseline_after": int(i[REBASELINE_AFTER]),
            "profile": self._export_profile(row) if season is not None else None,
            **{name: self._export_memory(row, m) for m, name in enumerate(_MEMORY_NAMES)},
            "baseline": baseline,
            "episode": episode,
            "cusum": [float(f[CUSUM_UP]), float(f[CUSUM_DOWN])],
            "ewma": None if math.isnan(f[EWMA]) else float(f[EWMA]),
            "previous": None if math.isnan(f[PREVIOUS]) else float(f[PREVIOUS]),
            "resolution": None if math.isinf(f[RESOLUTION]) else float(f[RESOLUTION]),
            "seen": int(i[SEEN]),
        }

    def _export_profile(self, row: int) -> dict[str, Any]:
        f, i = self.floats[row], self.ints[row]
        return {"choice": PROFILE_CHOICES[int(i[P_CHOICE])], "season": int(i[P_SEASON]),
                "means": [None if v != v else float(v) for v in self.means[row]],
                "unit": float(f[P_UNIT]), "total": float(f[P_TOTAL]),
                "filled": int(i[P_FILLED]), "level": float(f[P_LEVEL]),
                "seen": int(i[P_SEEN]), "errors": [float(v) for v in f[P_ERROR:P_ERROR + 3]],
                "interval": float(f[P_INTERVAL]),
                "first": None if math.isnan(f[P_FIRST]) else float(f[P_FIRST]),
                "last": None if math.isnan(f[P_LAST]) else float(f[P_LAST])}

    def _export_memory(self, row: int, m: int) -> dict[str, Any]:
        fields = int(_FIELDS[m])
        whole, filled, length = (int(v) for v in self.shape[row, m])
        plane, offset = _PLANE[m], _OFFSET[m]
        blocks = self.blocks[row, plane, :whole, offset:offset + fields].ravel()
        return {**_MEMORY[m], "block_length": length,
                "blocks": [_finite(v) for v in blocks],
                "current": [_finite(v) for v in self.current[row, m, :fields]],
                "filled": filled}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _saved_extreme(value: object, maximum: bool) -> float:
    """A saved extreme back; None is an empty one (−inf for a maximum, +inf for a minimum)."""
    if value is None:
        return -_INF if maximum else _INF
    return float(value)  # type: ignore[arg-type]


def warm_up() -> None:
    """Compile the kernel now (or load it from the cache): installers and images call this so
    that a service's first batch does not wait 20-50 s for the compiler."""
    from vigil.detectors.adaptive import AdaptiveDetector

    kernel = AdaptiveKernel(1)
    kernel.load(0, AdaptiveDetector().state_dict())
    kernel.score_points(np.zeros(2, np.int64), np.array([1.0, 2.0]), np.array([0.0, 60.0]))


def score_series(params: Mapping[str, Any], values: Floats, timestamps: Floats,
                 ) -> tuple[Floats, npt.NDArray[np.bool_], Floats, Floats, Floats]:
    """One fresh series of ``AdaptiveDetector(**params)`` scored over its points at once:
    (score, anomaly, centre, lower, upper), what its ``update`` gives point by point."""
    kernel = AdaptiveKernel(1)
    kernel.load(0, AdaptiveDetector(**params).state_dict())
    out = kernel.score_points(np.zeros(len(values), np.int64), values, timestamps)
    floats = out.floats
    return (out.score, out.anomaly, floats[:, O_CENTRE], floats[:, O_LOWER],
            floats[:, O_UPPER])
