"""Columnar text for `vigil replay`: numbers formatted a whole column at a time, at C speed.

The replay's CSV output is fixed byte for byte by the csv module and Python's float formatting
(``repr`` of timestamps and values, ``%.6g`` of the score, ``%.10g`` of the limits).
:func:`csv_lines` gives the same bytes for a batch of rows with numpy and pyarrow compute:
``%.Ng`` rounds a scaled integer mantissa and assembles its digits as strings; ``repr`` takes
Arrow's shortest round-trip digits where both notations agree (magnitudes in [1e-4, 1e10)).
The few values neither covers (a ``%g`` exponent beyond ±22 or a mantissa within 1e-5 of a
rounding tie, a ``repr`` outside that range) get their digits from Python itself, so every
byte is Python's. pyarrow's own CSV writer is not used for this: it quotes every string and writes
floats in its own notation (``1e-7``, ``100`` for 100.0).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

Floats = npt.NDArray[np.float64]

_EXACT_POWERS: Final = 22
"""10**k is an exact float64 for k <= 22, so scaling by it rounds once, correctly."""

_POWERS: Final = 10.0 ** np.arange(_EXACT_POWERS + 1)

_TIE_MARGIN: Final = 1e-5
"""A scaled mantissa this close to .5 is left to Python: float error (< 2e-6 for 10 digits)
could round it either way."""


def general(values: Floats, digits: int) -> pa.StringArray:
    """``f"{x:.{digits}g}"`` of every value (1 <= digits <= 15), as Python writes it.

    The value rounded to ``digits`` significant digits is the float nearest that decimal, whose
    shortest round-trip digits (Arrow's) are the decimal's own with the trailing zeros gone:
    the fixed notation of ``%g`` as it stands, the scientific one once an exponent is added.

    >>> general(np.array([0.0, -0.0, 1234567.0, 1e-5, 0.000123456789, 100.0]), 6).to_pylist()
    ['0', '-0', '1.23457e+06', '1e-05', '0.000123457', '100']
    """
    magnitude = np.abs(values)
    finite = np.isfinite(values)
    nonzero = finite & (magnitude > 0.0)
    with np.errstate(all="ignore"):
        exponent = np.floor(np.log10(np.where(nonzero, magnitude, 1.0))).astype(np.int64)
        scaled = _scaled(magnitude, digits - 1 - exponent)
        low, high = scaled < 10.0 ** (digits - 1), scaled >= 10.0 ** digits
        exponent += high.astype(np.int64) - low.astype(np.int64)  # log10 was one off
        off = low | high
        scaled[off] = _scaled(magnitude[off], digits - 1 - exponent[off])
        fraction = scaled - np.floor(scaled)
    # Python's own digits where float error could round the other way or 10**shift is inexact
    slow = nonzero & ((np.abs(digits - 1 - exponent) > _EXACT_POWERS)
                      | (np.abs(fraction - 0.5) < _TIE_MARGIN))
    mantissa = np.floor(np.where(nonzero, scaled, 0.0) + 0.5)
    if slow.any():
        exact = [f"{x:.{digits - 1}e}" for x in magnitude[slow].tolist()]
        mantissa[slow] = [float(text[:text.index("e")].replace(".", "")) for text in exact]
        exponent[slow] = [int(text[text.index("e") + 1:]) for text in exact]
    carry = mantissa == 10.0 ** digits
    mantissa[carry] = 10.0 ** (digits - 1)
    exponent[carry] += 1
    exponent[~nonzero] = 0
    scientific = nonzero & ((exponent < -4) | (exponent >= digits))
    # fixed: the mantissa over 10**(digits-1-exponent) (0 to digits+3); scientific: over
    # 10**(digits-1), a number in [1, 10) written before the exponent
    shift = np.where(scientific, digits - 1, np.clip(digits - 1 - exponent, 0, _EXACT_POWERS))
    rounded = np.copysign(mantissa / _POWERS[shift], values)
    rounded[~finite] = np.abs(values[~finite])  # Arrow writes inf and nan as Python does
    rounded[values == -np.inf] = -np.inf
    text = pc.cast(pa.array(rounded), pa.string())
    if scientific.any():
        power = exponent[scientific]
        suffix = [f"e{p:+03d}" for p in power.tolist()]
        lead = pc.filter(text, pa.array(scientific))
        text = pc.replace_with_mask(text, pa.array(scientific), pc.binary_join_element_wise(
            lead, pa.array(suffix, type=pa.string()), ""))
    result: pa.StringArray = text
    return result


def shortest(values: Floats, texts: pa.StringArray | None = None) -> pa.StringArray:
    """``repr(x)`` of every value, as Python writes it; ``texts`` (null where unknown) are the
    values' input text, kept where it already is that ``repr``.

    >>> shortest(np.array([1767225600.0, 0.1, -0.0, 1e16, 1e-05])).to_pylist()
    ['1767225600.0', '0.1', '-0.0', '1e+16', '1e-05']
    >>> shortest(np.array([0.5, 0.5]), pa.array(["0.5", "0.50"])).to_pylist()
    ['0.5', '0.5']
    """
    if texts is not None:
        # a decimal of at most 15 digits is the shortest repr of the float nearest it
        magnitude = np.abs(values)
        kept = pc.and_kleene(pc.match_substring_regex(texts, _CANONICAL),
                             pc.less_equal(pc.utf8_length(texts), 17))
        kept = pc.fill_null(pc.and_(kept, pa.array(
            ((magnitude >= 1e-4) & (magnitude < 1e16)) | (magnitude == 0.0))), False)
        redo = ~kept.to_numpy(zero_copy_only=False)
        if not redo.any():
            result: pa.StringArray = texts
            return result
        return pc.replace_with_mask(texts, pa.array(redo), shortest(values[redo]))
    magnitude = np.abs(values)
    # Arrow and Python both write these in fixed notation with the same shortest digits;
    # Arrow leaves ".0" off a whole number.
    fixed = ((magnitude >= 1e-4) & (magnitude < 1e10)) | (magnitude == 0.0)
    text = pc.cast(pa.array(values, type=pa.float64()), pa.string())
    with np.errstate(invalid="ignore"):
        whole = pa.array(fixed & (values == np.floor(values)))
    text = pc.binary_join_element_wise(text, pc.if_else(whole, ".0", ""), "")
    return _patched(text, ~fixed, values, repr)


_CANONICAL: Final = r"^-?(?:0|[1-9][0-9]*)\.(?:0|[0-9]*[1-9])$"
"""Fixed notation as ``repr`` writes it: no leading or trailing zeros, a point, a digit after."""


def csv_fields(texts: Sequence[str]) -> list[str]:
    """Each text as the csv module writes one field (quoted only when it must be).

    >>> csv_fields(["web-1", "a,b", 'x"y'])
    ['web-1', '"a,b"', '"x""y"']
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = []
    for text in texts:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([text, ""])  # two fields: a lone empty field would be written '""'
        fields.append(buffer.getvalue()[:-2])
    return fields


def csv_lines(columns: Sequence[pa.Array]) -> pa.Buffer:
    """The bytes of one CSV line per row (fields joined by ``,``, each line ending in ``\\n``)
    from string or binary columns already formatted and quoted as fields.

    >>> bytes(csv_lines([pa.array(["1", "2"]), pa.array(['"a,b"', "c"])]))
    b'1,"a,b"\\n2,c\\n'
    """
    table = pa.table({f"c{index}": column for index, column in enumerate(columns)})
    sink = pa.BufferOutputStream()
    try:  # Arrow's writer, told to quote nothing: the fields are quoted already
        pcsv.write_csv(table, sink, pcsv.WriteOptions(
            include_header=False, quoting_style="none", batch_size=max(len(table), 1)))
        return sink.getvalue()
    except pa.ArrowInvalid:  # a quoted field (it refuses them) or a name that is not UTF-8
        pass
    empty, comma, newline = (pa.scalar(text, pa.binary()) for text in (b"", b",", b"\n"))
    lines = pc.binary_join_element_wise(*(pc.cast(c, pa.binary()) for c in columns), comma)
    lines = pc.binary_join_element_wise(lines, empty, newline)  # the empty field: a last "\n"
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32,
                            count=len(lines) + 1, offset=lines.offset * 4)
    data = lines.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _scaled(magnitude: Floats, shift: npt.NDArray[np.int64]) -> Floats:
    """``magnitude * 10**shift`` rounded once (shifts beyond ±22 are clipped: left to Python)."""
    clipped = np.clip(shift, -_EXACT_POWERS, _EXACT_POWERS)
    power = _POWERS[np.abs(clipped)]
    result: Floats = np.where(clipped >= 0, magnitude * power, magnitude / power)
    return result


def _patched(text: pa.Array, slow: npt.NDArray[np.bool_], values: Floats,
             python: Callable[[float], str]) -> pa.StringArray:
    """``text`` with the ``slow`` positions formatted by ``python`` instead."""
    if slow.any():
        replacements = pa.array([python(x) for x in values[slow].tolist()], type=pa.string())
        text = pc.replace_with_mask(text, pa.array(slow), replacements)
    result: pa.StringArray = text
    return result
