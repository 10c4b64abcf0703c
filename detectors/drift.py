"""Distribution-change detectors of one series: river's ADWIN, Page-Hinkley and KSWIN.

Each wrapper keeps river's parameter names and river's decision: ``anomaly`` is True exactly
when the river detector reports a drift at this point. What the wrappers add is Vigil's
protocol around it:

- ``score`` is the detector's own test statistic divided by its threshold, mapped by
  :func:`~detectors.base.score_from_ratio` (0.5 at the threshold):
  Page-Hinkley's cumulative deviation over ``threshold``; for KSWIN ``ln p / ln alpha``
  (p-value of the Kolmogorov-Smirnov test against ``alpha``); for ADWIN the largest
  ``|mean(W0) - mean(W1)| / epsilon_cut`` over the window's cut points, computed with
  river's own formula (river exposes no statistic, so the wrapper evaluates it on the window
  plus the new point, before river compresses or shrinks it).
- ``centre``, ``lower`` and ``upper`` are the mean and mean ± 3σ of the detector's current
  window *before* the point (since the last drift for Page-Hinkley), for plots and alerts;
  the drift decision does not use them.
- ``state_dict()`` serialises river's internal state explicitly as JSON (no pickle): the
  numbers Page-Hinkley and KSWIN keep in attributes, KSWIN's random generator state, and
  ADWIN's bucket window decoded field by field from the state bytes its Rust core exposes
  for pickling. river offers no public state API, so these attribute names and the byte
  layout are tied to the river version (0.26); ``state_dict`` checks the decoding
  round-trips byte for byte and ADWIN states record the river version they came from.

After a drift, river restarts each detector on the next point (ADWIN and KSWIN drop their
whole window), so a new window has to fill before the next alarm is possible.
"""

from __future__ import annotations

import math
import random
import struct
from collections import deque
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.metadata import version as _package_version
from typing import Any, Self

from river import drift

from vigil.detectors.base import Explanation, PointResult, register, score_from_ratio
from vigil.detectors.stats import RunningStats

BAND_SIGMAS = 3.0
"""Half-width of the displayed band (centre ± 3σ of the current window); not used to decide."""


def _band(value: float, n: int, mean: float, m2: float) -> tuple[float, float, float, float]:
    """(centre, lower, upper, z) of ``value`` against a window of ``n`` points."""
    if n < 2:
        return (mean if n else value), -math.inf, math.inf, 0.0
    sigma = math.sqrt(max(m2, 0.0) / (n - 1))
    lower, upper = mean - BAND_SIGMAS * sigma, mean + BAND_SIGMAS * sigma
    if sigma > 0.0:
        z = (value - mean) / sigma
    else:
        z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
    return mean, lower, upper, z


def _check_value(value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_float(name: str, value: object, low: float, high: float, *,
                 closed: bool = False) -> float:
    """A number in (low, high), or in [low, high] when ``closed``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            low <= value <= high if closed else low < value < high):
        interval = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g})"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _float_out(x: float) -> float | str:
    """JSON-safe float: non-finite values become the strings 'inf', '-inf', 'nan'."""
    return x if math.isfinite(x) else repr(float(x))


def _float_in(x: float | str) -> float:
    return float(x)


# --- ADWIN -------------------------------------------------------------------------------

_ADWIN_HEAD = struct.Struct("<diQddddddiiiiQ")
"""Bincode layout of river's Rust ``AdaptiveWindowing`` up to the length of its bucket list."""
_ADWIN_HEAD_FIELDS = ("delta", "clock", "max_buckets", "min_window_length", "grace_period",
                      "total", "variance", "width", "total_width", "n_buckets", "max_n_buckets",
                      "tick", "n_detections")
_ADWIN_TAIL = struct.Struct("<diQii")
"""The Python binding's copy of the parameters, after the inner window."""
_U64 = struct.Struct("<Q")
_RIVER_VERSION = _package_version("river")
_RIVER_MINOR = ".".join(_RIVER_VERSION.split(".")[:2])

# river's drift detectors are untyped: hold them as Any so strict typing stays on elsewhere.
_ADWIN: Any = drift.ADWIN
_PAGE_HINKLEY: Any = drift.PageHinkley
_KSWIN: Any = drift.KSWIN


def _decode_adwin(blob: bytes) -> dict[str, Any]:
    """ADWIN's Rust state bytes → plain fields and bucket rows (each row: size, totals, vars).

    The bytes are bincode: the inner ``AdaptiveWindowing`` (fields, then the bucket list),
    followed by the Python-facing copy of the parameters, which must equal the inner ones.
    """
    head = _ADWIN_HEAD.unpack_from(blob, 0)
    state: dict[str, Any] = dict(zip(_ADWIN_HEAD_FIELDS, head[:-1], strict=True))
    offset = _ADWIN_HEAD.size
    rows = []
    for _ in range(head[-1]):
        max_size, current_idx = struct.unpack_from("<QQ", blob, offset)
        offset += 16
        arrays = []
        for _ in range(2):
            (length,) = _U64.unpack_from(blob, offset)
            offset += 8
            arrays.append(list(struct.unpack_from(f"<{length}d", blob, offset)))
            offset += 8 * length
        rows.append({"max_size": max_size, "current_idx": current_idx,
                     "totals": arrays[0], "variances": arrays[1]})
    state["buckets"] = rows
    if offset + _ADWIN_TAIL.size != len(blob) or _ADWIN_TAIL.unpack_from(blob, offset) != (
            _adwin_tail(state)):
        raise ValueError(f"unexpected ADWIN state layout in river {_RIVER_VERSION}")
    return state


@cache
def _check_adwin_layout() -> None:
    """Fail clearly, once, if this river's ADWIN state bytes are not the layout decoded here."""
    probe = _ADWIN()
    for x in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        probe.update(x)
    blob = probe._helper.__getstate__()  # noqa: SLF001 - no public state API
    try:
        ok = _encode_adwin(_decode_adwin(blob)) == blob
    except (ValueError, KeyError, struct.error):
        ok = False
    if not ok:
        raise RuntimeError(f"the adwin detector reads river 0.26's ADWIN state; river "
                           f"{_RIVER_VERSION} stores it differently")


def _adwin_tail(state: Mapping[str, Any]) -> tuple[float, int, int, int, int]:
    return (state["delta"], state["clock"], state["max_buckets"],
            int(state["min_window_length"]), int(state["grace_period"]))


def _encode_adwin(state: Mapping[str, Any]) -> bytes:
    """Inverse of :func:`_decode_adwin`; ``ValueError`` on a window river could not load."""
    rows = state["buckets"]
    width = state["max_buckets"] + 1
    parts = [_ADWIN_HEAD.pack(*(state[name] for name in _ADWIN_HEAD_FIELDS), len(rows))]
    for row in rows:
        totals = [float(v) for v in row["totals"]]
        variances = [float(v) for v in row["variances"]]
        if row["max_size"] != state["max_buckets"] or len(totals) != width or len(
                variances) != width or not 0 <= row["current_idx"] <= width:
            raise ValueError(f"bad ADWIN bucket row {row!r}")
        parts.append(struct.pack("<QQ", row["max_size"], row["current_idx"]))
        for values in (totals, variances):
            parts.append(_U64.pack(width) + struct.pack(f"<{width}d", *values))
    if not rows:
        raise ValueError("an ADWIN window has at least one bucket row")
    parts.append(_ADWIN_TAIL.pack(*_adwin_tail(state)))
    return b"".join(parts)


def _adwin_cut_ratio(blob: bytes, value: float, delta: float, min_window_length: float) -> float:
    """Largest ``|mean(W0) - mean(W1)| / epsilon_cut`` over the cuts of the window + ``value``.

    The window is ADWIN's bucket list before this point, oldest bucket first, with ``value``
    appended as the newest one-point bucket; ``epsilon_cut`` is river's formula (Bifet and
    Gavaldà 2007, ADWIN2 with the variance-based bound).
    """
    head = _ADWIN_HEAD.unpack_from(blob, 0)
    total, m2, width, n_rows = float(head[5]), float(head[6]), float(head[7]), int(head[-1])
    offset = _ADWIN_HEAD.size
    buckets: list[tuple[float, Sequence[float]]] = []
    for index in range(n_rows):
        _, current_idx, length = struct.unpack_from("<QQQ", blob, offset)
        offset += 24
        totals: Sequence[float] = struct.unpack_from(f"<{current_idx}d", blob, offset)
        offset += 8 * length
        (length,) = _U64.unpack_from(blob, offset)
        offset += 8 + 8 * length
        buckets.append((float(1 << index), totals))
    if width > 0.0:
        d = value - total / width
        m2 += width * d * d / (width + 1.0)
    width += 1.0
    total += value
    if width < 2.0:
        return 0.0
    variance = m2 / width
    delta_prime = math.log(2.0 * math.log(width) / delta)
    n0 = u0 = 0.0
    n1, u1 = width, total
    best = 0.0
    for size, totals in reversed(buckets):  # oldest row first; within a row, oldest first
        for bucket_total in totals:
            n0 += size
            n1 -= size
            u0 += bucket_total
            u1 -= bucket_total
            if n0 >= min_window_length and n1 >= min_window_length:
                m_recip = 1.0 / (n0 - min_window_length + 1.0) + 1.0 / (
                    n1 - min_window_length + 1.0)
                epsilon = math.sqrt(2.0 * m_recip * variance * delta_prime) + (
                    2.0 / 3.0 * delta_prime * m_recip)
                best = max(best, abs(u0 / n0 - u1 / n1) / epsilon)
    return best  # the cut between the window and the new point itself is n1 = 1: too small


@register("adwin")
class AdwinDrift:
    """river's ADWIN: alarm when two sub-windows of the adaptive window differ in mean.

    >>> det = AdwinDrift(delta=0.002)
    >>> alarms = [t for t in range(600) if det.update(float(t >= 300) * 5.0 + (t % 7) / 7,
    ...                                               float(t)).anomaly]
    >>> 300 <= alarms[0] < 340
    True
    """

    name: str = "adwin"

    def __init__(self, delta: float = 0.002, clock: int = 32, max_buckets: int = 5,
                 min_window_length: int = 5, grace_period: int = 10) -> None:
        self.delta = _check_float("delta", delta, 0.0, 1.0)
        self.clock = _check_int("clock", clock, 1)
        self.max_buckets = _check_int("max_buckets", max_buckets, 1)
        self.min_window_length = _check_int("min_window_length", min_window_length, 1)
        self.grace_period = _check_int("grace_period", grace_period, 0)
        _check_adwin_layout()
        self._adwin = _ADWIN(delta=self.delta, clock=self.clock,
                                  max_buckets=self.max_buckets,
                                  min_window_length=self.min_window_length,
                                  grace_period=self.grace_period)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the current window, then let ADWIN learn it."""
        _check_value(value)
        adwin = self._adwin
        if adwin.drift_detected:  # river starts a new, empty window with this point
            n, mean, m2, ratio = 0, 0.0, 0.0, 0.0
        else:
            n, mean, m2 = int(adwin.width), adwin.estimation, adwin.variance
            blob = adwin._helper.__getstate__()  # noqa: SLF001 - no public state API
            ratio = _adwin_cut_ratio(blob, value, self.delta, float(self.min_window_length))
        centre, lower, upper, z = _band(value, n, mean, m2)
        adwin.update(value)
        anomaly = bool(adwin.drift_detected)
        details = {"width": float(adwin.width), "cut_ratio": ratio}
        return PointResult(score_from_ratio(ratio), anomaly, centre, lower, upper, z, n,
                           details=details,
                           explanation=Explanation("adwin cut", ratio, 1.0) if anomaly else None)

    def _params(self) -> dict[str, Any]:
        return {"delta": self.delta, "clock": self.clock, "max_buckets": self.max_buckets,
                "min_window_length": self.min_window_length, "grace_period": self.grace_period}

    def state_dict(self) -> dict[str, Any]:
        """Parameters and ADWIN's bucket window as plain numbers; ``from_state`` continues."""
        blob = self._adwin._helper.__getstate__()  # noqa: SLF001 - no public state API
        window = _decode_adwin(blob)
        if _encode_adwin(window) != blob:
            raise ValueError(f"ADWIN state of river {_RIVER_VERSION} does not round-trip")
        return {**self._params(), "river": _RIVER_MINOR,
                "drift_detected": bool(self._adwin.drift_detected), "window": window}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        if state.get("river") != _RIVER_MINOR:
            raise ValueError(f"ADWIN state saved with river {state.get('river')!r} cannot be "
                             f"restored with river {_RIVER_MINOR}; start the detector afresh")
        det = cls(delta=state["delta"], clock=state["clock"], max_buckets=state["max_buckets"],
                  min_window_length=state["min_window_length"],
                  grace_period=state["grace_period"])
        window = state["window"]
        if (window["delta"], window["clock"]) != (det.delta, det.clock):
            raise ValueError("ADWIN window state disagrees with the detector's parameters")
        try:
            det._adwin._helper.__setstate__(_encode_adwin(window))  # noqa: SLF001
        except (KeyError, TypeError, ValueError, struct.error) as exc:
            raise ValueError(f"bad ADWIN window state: {exc}") from exc
        det._adwin._drift_detected = bool(state["drift_detected"])  # noqa: SLF001
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"AdwinDrift({args})"


# --- Page-Hinkley --------------------------------------------------------------------------

PH_MODES = ("up", "down", "both")


@register("page_hinkley")
class PageHinkleyDrift:
    """river's Page-Hinkley test: alarm when the cumulative deviation from the mean passes
    ``threshold`` (in the series' units, as ``delta``).

    >>> det = PageHinkleyDrift(threshold=20.0)
    >>> results = [det.update(float(t >= 200) * 2.0 + (t % 5) / 5, float(t)) for t in range(400)]
    >>> first = next(t for t, r in enumerate(results) if r.anomaly)
    >>> 200 <= first < 230, results[first].score > 0.5
    (True, True)
    """

    name: str = "page_hinkley"

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001, mode: str = "both") -> None:
        self.min_instances = _check_int("min_instances", min_instances, 1)
        self.delta = _check_float("delta", delta, 0.0, 1e300, closed=True)
        self.threshold = _check_float("threshold", threshold, 0.0, math.inf)
        self.alpha = _check_float("alpha", alpha, 0.0, 1.0, closed=True)
        if self.alpha == 0.0:
            raise ValueError("alpha must be a number in (0, 1] (forgetting factor), got 0")
        if mode not in PH_MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, PH_MODES))}, "
                             f"got {mode!r}")
        self.mode = mode
        self._ph = _PAGE_HINKLEY(min_instances=self.min_instances, delta=self.delta,
                                     threshold=self.threshold, alpha=self.alpha, mode=mode)
        self._stats = RunningStats()  # points since the last restart, for the band

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the points since the last drift, then let the test learn it."""
        _check_value(value)
        ph = self._ph
        if ph.drift_detected:  # river restarts the test with this point
            self._stats = RunningStats()
        stats = self._stats
        n = stats.count
        centre, lower, upper, z = _band(value, n, stats.mean, stats.m2)
        ph.update(value)
        stats.update(value)
        increase = ph._sum_increase - ph._min_increase  # noqa: SLF001 - river's statistic
        decrease = ph._max_decrease - ph._sum_decrease  # noqa: SLF001
        statistic = (increase if self.mode == "up" else decrease if self.mode == "down"
                     else max(increase, decrease))
        details = {"ph_increase": increase, "ph_decrease": decrease}
        anomaly = bool(ph.drift_detected)
        test = "page_hinkley up" if increase >= decrease else "page_hinkley down"
        return PointResult(score_from_ratio(statistic / self.threshold), anomaly,
                           centre, lower, upper, z, n, details=details,
                           explanation=Explanation(test, statistic, self.threshold)
                           if anomaly else None)

    def _params(self) -> dict[str, Any]:
        return {"min_instances": self.min_instances, "delta": self.delta,
                "threshold": self.threshold, "alpha": self.alpha, "mode": self.mode}

    def state_dict(self) -> dict[str, Any]:
        """Parameters and the test's sums, JSON-serialisable; ``from_state`` continues exactly."""
        ph = self._ph
        mean = ph._x_mean  # noqa: SLF001 - river keeps the test's state in private attributes
        return {
            **self._params(),
            "drift_detected": bool(ph.drift_detected),
            "mean_n": mean.n,
            "mean": mean._mean,  # noqa: SLF001
            "sum_increase": ph._sum_increase,  # noqa: SLF001
            "sum_decrease": ph._sum_decrease,  # noqa: SLF001
            "min_increase": _float_out(ph._min_increase),  # noqa: SLF001
            "max_decrease": _float_out(ph._max_decrease),  # noqa: SLF001
            "stats": self._stats.state_dict(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        det = cls(min_instances=state["min_instances"], delta=state["delta"],
                  threshold=state["threshold"], alpha=state["alpha"], mode=state["mode"])
        ph = det._ph
        mean = ph._x_mean  # noqa: SLF001
        mean.n = float(state["mean_n"])
        mean._mean = float(state["mean"])  # noqa: SLF001
        ph._sum_increase = float(state["sum_increase"])  # noqa: SLF001
        ph._sum_decrease = float(state["sum_decrease"])  # noqa: SLF001
        ph._min_increase = _float_in(state["min_increase"])  # noqa: SLF001
        ph._max_decrease = _float_in(state["max_decrease"])  # noqa: SLF001
        ph._drift_detected = bool(state["drift_detected"])  # noqa: SLF001
        det._stats = RunningStats.from_state(state["stats"])
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"PageHinkleyDrift({args})"


# --- KSWIN --------------------------------------------------------------------------------


@register("kswin")
class KswinDrift:
    """river's KSWIN: alarm when a Kolmogorov-Smirnov test finds the last ``stat_size`` points
    distributed unlike a random sample of the older part of the window.

    ``seed`` defaults to 0 (river: None) so that a replay gives the same alarms every time.

    >>> det = KswinDrift(alpha=0.0001, seed=42)
    >>> values = [((t * 37) % 100) / 100 + (3.0 if t >= 300 else 0.0) for t in range(500)]
    >>> alarms = [t for t, v in enumerate(values) if det.update(v, float(t)).anomaly]
    >>> 300 <= alarms[0] < 330
    True
    """

    name: str = "kswin"

    def __init__(self, alpha: float = 0.005, window_size: int = 100, stat_size: int = 30,
                 seed: int | None = 0) -> None:
        self.alpha = _check_float("alpha", alpha, 0.0, 1.0)
        self.stat_size = _check_int("stat_size", stat_size, 1)
        self.window_size = _check_int("window_size", window_size, 2 * self.stat_size)
        if seed is not None:
            _check_int("seed", seed, 0)
        self.seed = seed
        self._ks = _KSWIN(alpha=self.alpha, window_size=self.window_size,
                               stat_size=self.stat_size, seed=seed)

    def update(self, value: float, timestamp: float) -> PointResult:
        """Score ``value`` against the current window, then let KSWIN learn and test it."""
        _check_value(value)
        ks = self._ks
        window: Sequence[float] = () if ks.drift_detected else ks.window
        n = len(window)
        mean = math.fsum(window) / n if n else 0.0
        m2 = math.fsum((x - mean) ** 2 for x in window) if n else 0.0
        centre, lower, upper, z = _band(value, n, mean, m2)
        ks.update(value)
        if n + 1 >= self.window_size:  # the test ran on this point
            p_value: float = max(float(ks.p_value), 0.0)
            ratio = math.log(p_value) / math.log(self.alpha) if p_value > 0.0 else math.inf
        else:
            p_value, ratio = 1.0, 0.0
        anomaly = bool(ks.drift_detected)
        return PointResult(score_from_ratio(ratio), anomaly, centre, lower, upper, z, n,
                           details={"p_value": p_value},
                           explanation=Explanation("kswin p-value", p_value, self.alpha)
                           if anomaly else None)

    def _params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "window_size": self.window_size,
                "stat_size": self.stat_size, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """Parameters, window and random generator state; ``from_state`` continues exactly."""
        ks = self._ks
        version, internal, gauss_next = ks._rng.getstate()  # noqa: SLF001 - no state API
        return {
            **self._params(),
            "drift_detected": bool(ks.drift_detected),
            "n": ks.n,
            "p_value": float(ks.p_value),
            "window": [float(x) for x in ks.window],
            "rng": [version, list(internal), gauss_next],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        det = cls(alpha=state["alpha"], window_size=state["window_size"],
                  stat_size=state["stat_size"], seed=state["seed"])
        ks = det._ks
        ks.n = int(state["n"])
        ks.p_value = float(state["p_value"])
        ks.window = deque((float(x) for x in state["window"]), maxlen=det.window_size)
        version, internal, gauss_next = state["rng"]
        rng = random.Random()  # noqa: S311 - KSWIN's sampling generator, not for secrets
        rng.setstate((int(version), tuple(int(i) for i in internal), gauss_next))
        ks._rng = rng  # noqa: SLF001
        ks._drift_detected = bool(state["drift_detected"])  # noqa: SLF001
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"KswinDrift({args})"
