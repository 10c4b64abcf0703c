"""A series' extremes over a long memory, in bounded space: the maxima and minima of blocks.

:class:`BlockExtremes` keeps, per block of consecutive points, the largest and second-largest
and the smallest and second-smallest value. Blocks start :data:`FIRST_BLOCK` points long;
whenever more than :data:`BLOCKS` blocks are complete, neighbours merge pairwise and the block
length doubles, up to :data:`LONGEST_BLOCK` points; after that the oldest block is dropped. So
the memory covers every point of a young series and the last ``BLOCKS × LONGEST_BLOCK`` points
of an old one, with at most ``5 × (BLOCKS + 1)`` numbers.

:meth:`BlockExtremes.tail` turns a value into tail evidence against that memory. A block
maximum is the series' behaviour at its most extreme, and the second-largest block maximum,
the *anchor*, is the edge of what it does repeatedly (one exceptional block, such as an
earlier anomaly, does not move it). Per point, a value at the anchor has probability about
``1.5 / n`` of being exceeded (``n`` points in memory); beyond it the tail falls off
exponentially with scale θ, so a value δ past the anchor has ``p = 1.5 / n · exp(−δ / θ)``. θ
is the largest of the tail's own scale, the *visibility* share of the series' range, and the
series' resolution floor:

- the tail's own scale is the median gap between a block's largest and second-largest value
  over ln 2 (that gap is exponential with scale θ for an exponential tail, whatever the level
  of the block, so a level that wanders between blocks does not inflate it);
- a move beyond everything seen must also be visible against the range of the series (the
  distance between the two anchors): θ is at least ``visibility ×`` that range, so bursts in
  a series whose range they already span are not extreme, and a smooth series, whose
  neighbouring points differ little, is not alarmed by every new high;
- a constant series has no spread at all: the floor (its resolution and level, see
  :func:`scale_floor`) keeps θ finite, so its first change is very rare but not infinitely so.

Below the anchor the evidence is the empirical tail of the blocks: if a share ``s`` of the
blocks (in the plotting position ``(k − 0.5) / blocks``) reach the value, a point does with
probability ``1 − (1 − s)^(1 / points per block)``, which is also how ``1.5 / n`` is computed.

>>> memory = BlockExtremes()
>>> for i in range(200):
...     memory.learn(10.0 + (i * 7 % 13) / 13.0)
>>> memory.count, memory.block_length, len(memory)
(200, 16, 13)
>>> round(memory.tail(10.5, 0.02, 0.0).evidence, 2)  # inside: p ≈ 0.19, ordinary
0.72
>>> round(memory.tail(12.0, 0.02, 0.0).evidence, 1)  # far beyond the maxima: p ≈ 5e-7
6.3
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BLOCKS = 16
"""Complete blocks kept (a merge halves them when one more completes while they grow)."""
FIRST_BLOCK = 8
"""Points in a block of a new series."""
LONGEST_BLOCK = 512
"""Longest block: the memory spans the last ``BLOCKS × LONGEST_BLOCK`` (8,192) points."""
ANCHOR_RANK = 1.5
"""Blocks beyond the anchor, the second-largest block maximum, in the plotting position
(k − 0.5) of its rank k = 2."""
_FIELDS = 5  # per block: max, second max, min, second min, count
_LN10 = math.log(10.0)
_LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True)
class Tail:
    """How far out one value is against the memory, on its more extreme side."""

    evidence: float
    """−log10 of the probability per point of a value at least this far out."""
    side: int
    """+1 above the anchors, −1 below, 0 inside."""
    upper: float
    """The value above which the evidence reaches the ``target`` of :meth:`BlockExtremes.tail`."""
    lower: float
    """The value below which it does."""
    beyond: float = 0.0
    """How far past its anchor the value is, in units of the tail's scale (0 inside)."""


def scale_floor(resolution: float, level: float) -> float:
    """The smallest spread a series is judged with: its resolution (smallest step between two
    different values it took) and a millionth of its level, so that a constant series has a
    finite, tiny scale instead of none.

    >>> scale_floor(1.0, 20.0), scale_floor(0.0, 1e6), scale_floor(0.0, 0.0)
    (1.0, 1.0, 1e-300)
    """
    return max(resolution, 1e-6 * abs(level), 1e-300)


class BlockExtremes:
    """Block maxima and minima (with their runners-up) of a series; see the module docstring."""

    __slots__ = ("_blocks", "_current", "block_length", "count", "_summary")

    def __init__(self) -> None:
        self._blocks = array("d")  # complete blocks, _FIELDS numbers each, oldest first
        self._current = array("d", (-math.inf, -math.inf, math.inf, math.inf, 0.0))
        self.block_length = FIRST_BLOCK
        self.count = 0
        """Points in memory (complete blocks and the current one)."""
        self._summary: tuple[list[float], list[float], float, float] | None = None

    def __len__(self) -> int:
        """Blocks in memory, the current one included once it has a point."""
        return len(self._blocks) // _FIELDS + (1 if self._current[4] else 0)

    def learn(self, value: float) -> None:
        """Add one point to the current block (closing it, and merging, when it is full)."""
        block = self._current
        if value > block[0]:
            block[1] = block[0]
            block[0] = value
        elif value > block[1]:
            block[1] = value
        if value < block[2]:
            block[3] = block[2]
            block[2] = value
        elif value < block[3]:
            block[3] = value
        block[4] += 1.0
        self.count += 1
        if block[4] >= self.block_length:
            self._close()

    def keep_recent(self, points: int) -> None:
        """Forget the complete blocks that ended more than ``points`` points ago."""
        kept = int(self._current[4])
        blocks = self._blocks
        start = len(blocks)
        while start >= _FIELDS and kept < points:
            start -= _FIELDS
            kept += int(blocks[start + 4])
        self.count = kept
        self._blocks = blocks[start:]
        self._summary = None

    def rescale(self, factor: float) -> None:
        """Multiply every remembered value by ``factor`` > 0 (the memory holds deviations from a
        level, and their spread has changed by that factor)."""
        self._blocks = array("d", (v * factor if i % _FIELDS != 4 else v
                                   for i, v in enumerate(self._blocks)))
        for i in range(4):
            self._current[i] *= factor
        self._summary = None

    def _close(self) -> None:
        self._blocks.extend(self._current)
        self._current = array("d", (-math.inf, -math.inf, math.inf, math.inf, 0.0))
        self._summary = None
        if len(self._blocks) <= BLOCKS * _FIELDS:
            return
        if self.block_length < LONGEST_BLOCK:
            self._blocks = _merged(self._blocks)
            self.block_length *= 2
        else:
            self.count -= int(self._blocks[4])
            del self._blocks[:_FIELDS]

    def _complete(self) -> tuple[list[float], list[float], float, float]:
        """Sorted maxima and negated minima of the complete blocks, and the median top gap
        above and below (θ estimates), cached until the next block closes."""
        if self._summary is None:
            blocks = self._blocks
            maxima = sorted(blocks[0::_FIELDS])
            minima = sorted(-v for v in blocks[2::_FIELDS])
            gaps_high = sorted(a - b for a, b in zip(blocks[0::_FIELDS], blocks[1::_FIELDS],
                                                     strict=True) if b > -math.inf)
            gaps_low = sorted(b - a for a, b in zip(blocks[2::_FIELDS], blocks[3::_FIELDS],
                                                    strict=True) if b < math.inf)
            self._summary = (maxima, minima, _median(gaps_high) / _LN2,
                             _median(gaps_low) / _LN2)
        return self._summary

    def anchors(self) -> tuple[float, float] | None:
        """(lower, upper) anchor: second-smallest block minimum, second-largest block maximum
        (the current block included); None with fewer than two blocks."""
        if len(self) < 2:
            return None
        maxima, minima, _, _ = self._complete()
        return (-_second(minima, -self._current[2]), _second(maxima, self._current[0]))

    def tail(self, value: float, visibility: float, floor: float,
             target: float | None = None, inside: tuple[float, float] | None = None) -> Tail:
        """Evidence (−log10 p per point) that ``value`` is this far beyond the memory on its
        more extreme side, and, with ``target`` evidence, the values that reach it. ``inside``
        (low, high) widens the anchors to include that interval."""
        bounds = self.anchors()
        if bounds is None:
            return Tail(0.0, 0, math.inf, -math.inf)
        low, high = bounds
        if inside is not None:
            low, high = min(low, inside[0]), max(high, inside[1])
        maxima, minima, theta_high, theta_low = self._complete()
        span = high - low
        blocks = float(len(self))
        per_block = self.count / blocks
        base = -math.log10(_per_point(ANCHOR_RANK / blocks, per_block))
        scale_high = max(theta_high, visibility * span, floor)
        scale_low = max(theta_low, visibility * span, floor)
        evidence, side, beyond = 0.0, 0, 0.0
        if value > high:
            beyond, side = (value - high) / scale_high, 1
            evidence = base + beyond / _LN10
        elif value < low:
            beyond, side = (low - value) / scale_low, -1
            evidence = base + beyond / _LN10
        else:
            reach = min(_reaching(maxima, value, self._current[0]),
                        _reaching(minima, -value, -self._current[2]))
            evidence = -math.log10(_per_point(reach / blocks, per_block))
        upper, lower = math.inf, -math.inf
        if target is not None:
            beyond = max(0.0, target - base) * _LN10
            upper, lower = high + beyond * scale_high, low - beyond * scale_low
        return Tail(evidence, side, upper, lower, beyond)

    def state_dict(self) -> dict[str, Any]:
        """Blocks, current block and block length, JSON-serialisable (infinities as None)."""
        return {"blocks": [_finite(v) for v in self._blocks],
                "current": [_finite(v) for v in self._current],
                "block_length": self.block_length, "count": self.count}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BlockExtremes:
        """Rebuild the memory saved by :meth:`state_dict`."""
        memory = cls()
        blocks = [_infinite(v, i % _FIELDS) for i, v in enumerate(state["blocks"])]
        current = [_infinite(v, i) for i, v in enumerate(state["current"])]
        length = int(state["block_length"])
        if (len(blocks) % _FIELDS or len(blocks) > BLOCKS * _FIELDS or len(current) != _FIELDS
                or not FIRST_BLOCK <= length <= LONGEST_BLOCK):
            raise ValueError("bad block extremes state: wrong block count, size or length")
        memory._blocks = array("d", blocks)
        memory._current = array("d", current)
        memory.block_length = length
        memory.count = int(state["count"])
        return memory


def _per_point(block_share: float, per_block: float) -> float:
    """Probability per point of a value that ``block_share`` of the blocks reach, for blocks of
    ``per_block`` points: ``1 − (1 − share)^(1 / per_block)``."""
    if block_share >= 1.0:
        return 1.0
    return -math.expm1(math.log1p(-block_share) / per_block)


def _merged(blocks: array[float]) -> array[float]:
    """Neighbouring blocks merged pairwise (an odd last block stays as it is)."""
    out = array("d")
    whole = len(blocks) // _FIELDS
    for i in range(0, whole - 1, 2):
        a = blocks[i * _FIELDS:(i + 1) * _FIELDS]
        b = blocks[(i + 1) * _FIELDS:(i + 2) * _FIELDS]
        tops = sorted((a[0], a[1], b[0], b[1]))
        bottoms = sorted((a[2], a[3], b[2], b[3]))
        out.extend((tops[3], tops[2], bottoms[0], bottoms[1], a[4] + b[4]))
    if whole % 2:
        out.extend(blocks[(whole - 1) * _FIELDS:])
    return out


def _second(ordered: list[float], extra: float) -> float:
    """Second largest of a sorted list and one more value (-inf padding)."""
    first = ordered[-1] if ordered else -math.inf
    second = ordered[-2] if len(ordered) > 1 else -math.inf
    if extra > first:
        return first
    return max(second, extra)


def _reaching(ordered: list[float], value: float, extra: float) -> float:
    """(Number of the values that reach ``value``) − 0.5, over a sorted list and one more."""
    count = len(ordered) - bisect_left(ordered, value) + (1 if extra >= value else 0)
    return count - 0.5 if count else 0.0


def _median(ordered: list[float]) -> float:
    if not ordered:
        return 0.0
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else 0.5 * (ordered[half - 1] + ordered[half])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _infinite(value: object, field: int) -> float:
    """A saved number back; None is the empty side (+inf for minima, -inf for maxima)."""
    if value is None:
        return -math.inf if field < 2 else math.inf
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        raise ValueError("bad block extremes state: NaN")
    return number
