"""A series' extremes over a long memory, in bounded space: the maxima and minima of blocks.

:class:`BlockExtremes` keeps, per block of consecutive points, its largest and smallest value
(and, with ``runners_up``, the second-largest and second-smallest). Blocks start
:data:`FIRST_BLOCK` points long; whenever :data:`BLOCKS` blocks are complete,
neighbours merge pairwise and the block length doubles, up to :data:`LONGEST_BLOCK` points;
after that the oldest block is dropped. So the memory covers every point of a young series
and the last ``BLOCKS × LONGEST_BLOCK`` points of an old one, in at most ``4 × (BLOCKS + 1)``
numbers.

:meth:`BlockExtremes.tail` turns a value into tail evidence against that memory. A block
maximum is the series' behaviour at its most extreme, and the second-largest block maximum,
the *anchor*, is the edge of what it does repeatedly (one exceptional block, such as an
earlier anomaly, does not move it). Per point, a value at the anchor has probability
``p₀ ≈ 1.5 / n`` of being exceeded (``n`` points in memory); beyond it the tail falls off
exponentially with scale θ, so a value δ past the anchor has ``p = p₀ · exp(−δ / θ)``. θ is
the largest of the tail's own scale, a *visibility* share of the series' range, and the
series' resolution floor:

- the tail's own scale (with runners-up) is the median gap between a block's extreme and its
  runner-up, over ln 2: that gap is exponential with scale θ for an exponential tail, whatever
  the level of the block, so a level that wanders between blocks does not inflate it;
- a move beyond everything seen must also be visible against the range of the series (the
  distance between the two anchors): θ is at least ``visibility ×`` that range, so bursts in
  a series whose range they already span are not extreme, and a smooth series, whose
  neighbouring points differ little, is not alarmed by every new high;
- a constant series has no spread at all: the floor (its resolution and level, see
  :func:`scale_floor`) keeps θ finite, so its first change is very rare but not infinitely so.

Below the anchor the evidence is the empirical tail of the blocks: if a share ``s`` of the
blocks (in the plotting position ``(k − 0.5) / blocks``) reach the value, a point does with
probability ``1 − (1 − s)^(1 / points per block)``, which is also how ``p₀`` is computed.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BLOCKS = 16
"""Complete blocks kept by default (a merge halves them when one more completes while they
grow)."""
FIRST_BLOCK = 8
"""Points in a block of a new series."""
LONGEST_BLOCK = 512
"""Longest block by default: the memory spans the last ``BLOCKS × LONGEST_BLOCK`` (8,192)
points."""
ANCHOR_RANK = 1.5
"""Blocks beyond the anchor, the second-largest block maximum, in the plotting position
(k − 0.5) of its rank k = 2."""
_SUMMARY = 6
"""Numbers in a memory's cached summary (kept after its current block)."""
_LN10 = math.log(10.0)
_LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True)
class Tail:
    """How far out one value is against the memory, on its more extreme side."""

    evidence: float
    """−log10 of the probability per point of a value at least this far out."""
    side: int
    """+1 above the anchors, −1 below, 0 between them."""
    beyond: float
    """How far past its anchor the value is, in units of the tail's scale (0 between them)."""
    upper: float = math.inf
    """The value above which the evidence reaches the ``target`` of :meth:`BlockExtremes.tail`."""
    lower: float = -math.inf
    """The value below which it does."""


def scale_floor(resolution: float, level: float) -> float:
    """The smallest spread a series is judged with: its resolution (smallest step between two
    different values it took) and a millionth of its level, so that a constant series has a
    finite, tiny scale instead of none.

    >>> scale_floor(1.0, 20.0), scale_floor(0.0, 1e6), scale_floor(0.0, 0.0)
    (1.0, 1.0, 1e-300)
    """
    return max(resolution, 1e-6 * abs(level), 1e-300)


class BlockExtremes:
    """Block maxima and minima of a series (and runners-up); see the module docstring.

    Every complete block is ``block_length`` points long (blocks merge in pairs, all at once,
    when the memory is full and still growing), so only the current block counts its points.
    """

    __slots__ = ("_fields", "_low", "capacity", "longest", "_blocks", "_current", "_filled",
                 "block_length")

    def __init__(self, runners_up: bool = True, capacity: int = BLOCKS,
                 longest: int = LONGEST_BLOCK, single: bool = False) -> None:
        if not 2 <= capacity <= 1024 or capacity % 2 or not FIRST_BLOCK <= longest <= 1 << 20:
            raise ValueError(f"need an even capacity of 2 to 1,024 blocks and a longest block "
                             f"of {FIRST_BLOCK} to 2^20 points, got {capacity!r}, {longest!r}")
        # per block: max, min; with runners-up: max, second max, min, second min
        self._fields = 4 if runners_up else 2
        self._low = self._fields // 2  # where the minimum is
        self.capacity = capacity
        """Complete blocks kept."""
        self.longest = longest
        """Longest block: the memory spans the last ``capacity × longest`` points."""
        # complete blocks, oldest first, in double or (``single``) single precision
        self._blocks = array("f" if single else "d")
        self._current = self._empty()
        self._filled = 0  # points in the current block
        self.block_length = FIRST_BLOCK

    def _empty(self) -> array[float]:
        """An empty current block, followed by a stale summary (see :meth:`_refreshed`)."""
        half = self._fields // 2
        return array(self._blocks.typecode,
                     [-math.inf] * half + [math.inf] * half + [math.nan] * _SUMMARY)

    @property
    def single(self) -> bool:
        """Whether the extremes are kept in single precision (half the bytes)."""
        return self._blocks.typecode == "f"

    @property
    def runners_up(self) -> bool:
        """Whether the blocks keep their second-largest and second-smallest value."""
        return self._fields == 4

    @property
    def count(self) -> int:
        """Points in memory (complete blocks and the current one)."""
        return len(self._blocks) // self._fields * self.block_length + self._filled

    def __len__(self) -> int:
        """Blocks in memory, the current one included once it has a point."""
        return len(self._blocks) // self._fields + (1 if self._filled else 0)

    def learn(self, value: float) -> None:
        """Add one point to the current block (closing it, and merging, when it is full)."""
        block = self._current
        if self._fields == 4:
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
        else:
            if value > block[0]:
                block[0] = value
            if value < block[1]:
                block[1] = value
        self._filled += 1
        if self._filled >= self.block_length:
            self._close()

    def _close(self) -> None:
        fields, current = self._fields, self._current
        blocks = self._blocks + current[:fields]  # a new array of exactly this size
        half = fields // 2
        for i in range(fields):
            current[i] = -math.inf if i < half else math.inf
        current[fields] = math.nan  # the summary is stale
        self._filled = 0
        whole = len(blocks) // fields
        if whole >= self.capacity and self.block_length < self.longest:
            blocks = _merged(blocks, fields)
            self.block_length *= 2
        elif whole > self.capacity:
            blocks = blocks[fields:]
        self._blocks = blocks

    def keep_recent(self, points: int) -> None:
        """Forget the complete blocks that ended more than ``points`` points ago."""
        whole = len(self._blocks) // self._fields
        keep = min(whole, max(0, -(-(points - self._filled) // self.block_length)))
        self._blocks = self._blocks[(whole - keep) * self._fields:]
        self._current[self._fields] = math.nan

    def shift_recent(self, points: int, delta: float) -> None:
        """Add ``delta`` to the extremes of the blocks that hold the last ``points`` points (the
        memory holds deviations from a level, and the level of those points has moved)."""
        fields = self._fields
        for i in range(fields):
            if self._filled:
                self._current[i] += delta
        whole = len(self._blocks) // fields
        shifted = min(whole, max(0, -(-(points - self._filled) // self.block_length)))
        if shifted:
            blocks = self._blocks
            self._blocks = blocks[:(whole - shifted) * fields] + array(
                blocks.typecode, (v + delta for v in blocks[(whole - shifted) * fields:]))
        self._current[fields] = math.nan

    def _refreshed(self) -> int:
        """Where the summary of the complete blocks starts in ``_current`` (after the current
        block), refreshed first if a block closed since: their two largest maxima, two
        smallest minima and tail scales above and below (median gap between an extreme and
        its runner-up, over ln 2)."""
        fields, current = self._fields, self._current
        if current[fields] == current[fields]:  # not NaN: fresh
            return fields
        low, blocks = self._low, self._blocks
        maxima = sorted(blocks[0::fields])
        minima = sorted(blocks[low::fields])
        theta_high = theta_low = 0.0
        if fields == 4:
            theta_high = _median(sorted(a - b for a, b in zip(blocks[0::4], blocks[1::4],
                                                              strict=True) if b > -math.inf))
            theta_low = _median(sorted(b - a for a, b in zip(blocks[2::4], blocks[3::4],
                                                             strict=True) if b < math.inf))
        current[fields:] = array(blocks.typecode, (
            maxima[-1] if maxima else -math.inf, maxima[-2] if len(maxima) > 1 else -math.inf,
            minima[0] if minima else math.inf, minima[1] if len(minima) > 1 else math.inf,
            theta_high / _LN2, theta_low / _LN2))
        return fields

    def anchors(self) -> tuple[float, float] | None:
        """(lower, upper) anchor: second-smallest block minimum, second-largest block maximum
        (the current block included); None with fewer than two blocks."""
        if len(self) < 2:
            return None
        at, current = self._refreshed(), self._current
        first, second, lowest, next_lowest = current[at:at + 4]
        top, bottom = current[0], current[self._low]
        high = first if top > first else max(second, top)
        low = lowest if bottom < lowest else min(next_lowest, bottom)
        return low, high

    def anchor_evidence(self) -> float:
        """Evidence (−log10 p per point) of a value at an anchor: ``p₀``, the share of points
        in memory reaching it by the blocks' plotting position (0 with fewer than two
        blocks)."""
        blocks = float(len(self))
        if blocks < 2.0:
            return 0.0
        return -math.log10(_per_point(ANCHOR_RANK / blocks, self.count / blocks))

    def tail(self, value: float, visibility: float, floor: float,
             target: float | None = None, inside: tuple[float, float] | None = None) -> Tail:
        """Evidence (−log10 p per point) that ``value`` is this far beyond the memory on its
        more extreme side, and, with ``target`` evidence, the values where it reaches that.
        ``inside`` (low, high) widens the anchors to include that interval."""
        bounds = self.anchors()
        if bounds is None:
            return Tail(0.0, 0, 0.0)
        low, high = bounds
        if inside is not None:
            low, high = min(low, inside[0]), max(high, inside[1])
        span = high - low
        blocks = float(len(self))
        per_block = self.count / blocks
        base = self.anchor_evidence()
        at = self._refreshed()
        scale_high = max(self._current[at + 4], visibility * span, floor)
        scale_low = max(self._current[at + 5], visibility * span, floor)
        side, beyond = 0, 0.0
        if value > high:
            beyond, side = (value - high) / scale_high, 1
            evidence = base + beyond / _LN10
        elif value < low:
            beyond, side = (low - value) / scale_low, -1
            evidence = base + beyond / _LN10
        else:
            evidence = -math.log10(_per_point(self._reaching(value) / blocks, per_block))
        if target is None:
            return Tail(evidence, side, beyond)
        margin = max(0.0, target - base) * _LN10
        return Tail(evidence, side, beyond, high + margin * scale_high, low - margin * scale_low)

    def _reaching(self, value: float) -> float:
        """Blocks whose maximum reaches ``value`` or whose minimum does, whichever are fewer,
        in the plotting position ``k − 0.5`` (the current block included)."""
        fields, low, blocks, current = self._fields, self._low, self._blocks, self._current
        above = sum(1 for v in blocks[0::fields] if v >= value) + (current[0] >= value)
        below = sum(1 for v in blocks[low::fields] if v <= value) + (current[low] <= value)
        return max(0.5, min(above, below) - 0.5)

    def state_dict(self) -> dict[str, Any]:
        """Blocks, current block and block length, JSON-serialisable (infinities as None)."""
        return {"runners_up": self._fields == 4, "capacity": self.capacity, "single": self.single,
                "longest": self.longest, "block_length": self.block_length,
                "blocks": [_finite(v) for v in self._blocks],
                "current": [_finite(v) for v in self._current[:self._fields]],
                "filled": self._filled}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BlockExtremes:
        """Rebuild the memory saved by :meth:`state_dict`."""
        memory = cls(bool(state["runners_up"]), int(state["capacity"]), int(state["longest"]),
                     bool(state.get("single", False)))
        fields = memory._fields
        half = fields // 2
        blocks = [_infinite(v, i % fields < half) for i, v in enumerate(state["blocks"])]
        current = [_infinite(v, i < half) for i, v in enumerate(state["current"])]
        length, filled = int(state["block_length"]), int(state["filled"])
        if (len(blocks) % fields or len(blocks) > memory.capacity * fields
                or len(current) != fields or not FIRST_BLOCK <= length <= memory.longest
                or length & (length - 1) or not 0 <= filled < length):
            raise ValueError("bad block extremes state: wrong block count, size or length")
        code = memory._blocks.typecode
        memory._blocks = array(code, blocks)
        memory._current = array(code, current + [math.nan] * _SUMMARY)
        memory.block_length = length
        memory._filled = filled
        return memory


def _per_point(block_share: float, per_block: float) -> float:
    """Probability per point of a value that ``block_share`` of the blocks reach, for blocks of
    ``per_block`` points: ``1 − (1 − share)^(1 / per_block)``."""
    if block_share >= 1.0:
        return 1.0
    return -math.expm1(math.log1p(-block_share) / per_block)


def _merged(blocks: array[float], fields: int) -> array[float]:
    """Neighbouring blocks merged pairwise (an even number of them)."""
    out: list[float] = []
    for i in range(0, len(blocks), 2 * fields):
        a, b = blocks[i:i + fields], blocks[i + fields:i + 2 * fields]
        if fields == 4:
            tops = sorted((a[0], a[1], b[0], b[1]))
            bottoms = sorted((a[2], a[3], b[2], b[3]))
            out.extend((tops[3], tops[2], bottoms[0], bottoms[1]))
        else:
            out.extend((max(a[0], b[0]), min(a[1], b[1])))
    return array(blocks.typecode, out)


def _median(ordered: list[float]) -> float:
    if not ordered:
        return 0.0
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else 0.5 * (ordered[half - 1] + ordered[half])


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _infinite(value: object, maximum: bool) -> float:
    """A saved number back; None is an empty extreme (-inf for a maximum, +inf for a minimum)."""
    if value is None:
        return -math.inf if maximum else math.inf
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        raise ValueError("bad block extremes state: NaN")
    return number
