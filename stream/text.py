"""Text from Kafka made safe to print: control characters shown as escapes, not obeyed.

A key or metric name is chosen by whoever produces the event; printed raw, a newline forges a
log line and an escape sequence rewrites the terminal. :func:`printable` keeps every other
character (non-ASCII names stay readable) and escapes C0 and C1 controls, DEL, and the
characters that reorder or break lines (bidirectional overrides, line and paragraph
separators).
"""

from __future__ import annotations

import re
from typing import Final

_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e"
                            "\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` with every control character escaped (``\n``, ``\x1b``, ``\u202e``, ...).

    >>> printable("web-1\nFAKE ERROR \x1b[31mred\u202e")
    'web-1\\nFAKE ERROR \\x1b[31mred\\u202e'
    >>> printable("hôte-é 😀")
    'hôte-é 😀'
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable_json(text: str) -> str:
    r"""JSON text with the same characters escaped as JSON escapes: the data reads back the
    same (``json.dumps`` leaves C1 controls and bidirectional marks raw unless told to escape
    all non-ASCII).

    >>> printable_json('{"key": "web\u202e1"}')
    '{"key": "web\\u202e1"}'
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
