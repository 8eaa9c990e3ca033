"""Small pure formatters shared by screens and widgets (no Textual imports)."""

from __future__ import annotations

import math

GIB = 1024**3


def gib(n: float | int | None, digits: int = 1) -> str:
    if n is None:
        return "–"
    return f"{n / GIB:.{digits}f} GiB"


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def human_count(n: float | int | None) -> str:
    """1.2B, 350M, 12.5K."""
    if n is None:
        return "–"
    value = float(n)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}".replace(".0" + unit, unit)
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def metric(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "NaN"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def compact_float(value: float | None) -> str:
    """``0.1``, ``5e-06``: the shortest faithful form, for config values."""
    if value is None:
        return "–"
    return f"{value:g}"


def progress_bar(fraction: float, width: int) -> str:
    """A text bar made of block characters (eighths), ``width`` cells wide."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    bar = "█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")
    return bar.ljust(width)
