"""Compact number and text forms that stay true when space is short.

A table cell that is too narrow must never turn a value into a different-looking one: "162/100"
for 162/1000, "1.26e-" for 1.26e-05, "0" for 0.1. Every function here returns a string that fits the
width asked for by giving up *precision* (fewer significant digits, ``k``/``M`` suffixes, a marked
``…``), never by dropping characters that carry magnitude. Pure functions: the console and the CLI
share them.
"""

from __future__ import annotations

import math

MISSING = "–"
ELLIPSIS = "…"
_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _sig(value: float, digits: int, zeros: bool = False) -> str:
    """``value`` to ``digits`` significant digits, exponent written compactly (``1.3e-5``, ``2e10``);
    ``zeros`` keeps trailing zeros (``0.250``) so a column of metrics reads at one precision."""
    text = f"{value:#.{digits}g}".rstrip(".") if zeros else f"{value:.{digits}g}"
    text = text.replace(".e", "e")
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}e{int(exp)}"
    return text


def _exp(value: float, digits: int) -> str:
    mantissa, exp = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exp)}"


def num(value: float | int | None, width: int | None = None, digits: int = 3, zeros: bool = False) -> str:
    """A number in at most ``digits`` significant digits: ``0.693``, ``0.1``, ``1.3e-5``, ``-4.2e7``.

    With ``width``, fewer digits are used until it fits; no finite float needs more than 7 cells
    (``-1e-308``). ``None`` is ``–``; NaN and infinities are spelled out. ``zeros`` keeps trailing
    zeros (``0.250``, for metrics); without it the shortest form (``0.1``, for settings such as β).
    """
    if value is None:
        return MISSING
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    text = _sig(value, digits, zeros)
    if width is not None and len(text) > width:
        # Most digits first; at each precision the plain form, then the exponent form (0.0007 → 7e-4).
        forms = [form for d in range(digits, 0, -1) for form in (_sig(value, d, zeros), _exp(value, d))]
        text = next((form for form in forms if len(form) <= width), text)
        if len(text) > width:
            # Only three-digit exponents get here. Cutting ``-1e-308`` to ``-1e-3…`` would read as -0.001,
            # so a tiny value says "about zero" and anything else says only that it did not fit.
            if abs(value) < 1e-9:
                tiny = "≈0" if value > 0 else "-≈0"
                if len(tiny) <= width:
                    return tiny
            return ELLIPSIS
    return text


def _compact(n: int, digits: int) -> str:
    """``n`` with a k/M/G/T suffix in at most ``digits`` significant digits; plain below 1000."""
    for scale, suffix in _SUFFIXES:
        if abs(n) >= scale:
            return _sig(n / scale, digits) + suffix
    return str(n)


def count(n: int | None, width: int | None = None) -> str:
    """A whole count: ``999``, ``1k``, ``1.5k``, ``12.3k``, ``2.5M``; the plain digits when they fit ``width``."""
    if n is None:
        return MISSING
    n = int(n)
    plain = str(n)
    if (width is not None and len(plain) <= width) or abs(n) < 1000:
        return plain
    forms = [_compact(n, d) for d in (3, 2, 1)]
    return next((form for form in forms if width is None or len(form) <= width), forms[-1])


def steps(step: int | None, total: int | None, width: int | None = None) -> str:
    """Progress ``162/1000``, compacted to ``162/1k`` (then ``1.2k/5k``) when ``width`` is short."""
    if not total:
        return count(step) if step else MISSING
    step = int(step or 0)
    forms = [f"{step}/{total}", f"{step}/{count(total)}", *(f"{_compact(step, d)}/{count(total)}" for d in (3, 2, 1))]
    return next((form for form in forms if width is None or len(form) <= width), forms[-1])


def ellipsize(text: str | None, width: int, keep_end: bool = False) -> str:
    """``text`` if it fits, else cut with a visible ``…``; ``keep_end`` keeps both ends (ids, groups,
    whose distinguishing part is often the tail)."""
    if text is None:
        return MISSING
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return ELLIPSIS
    if keep_end:
        head = width // 2
        tail = width - 1 - head
        return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")
    return text[: width - 1] + ELLIPSIS


def column_widths(header: list[str], rows: list[list[str]]) -> list[int]:
    """The widest cell of each column (header included), for a plain-text table sized to its data."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths
