"""Braille line charts as plain data: pure functions, no Textual (unit-tested directly).

A terminal cell holds a 2×4 grid of braille dots, so a chart ``w`` cells wide and ``h`` high
has ``2w × 4h`` dots. Each series is binned into dot columns (the mean per column, from
incrementally kept prefix sums: :class:`Summary`), then neighbouring columns are joined by
vertical runs, so 10,000 steps draw as fast as 100.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

Point = tuple[float, "float | None"]

BRAILLE_BASE = 0x2800
# Dot bit for (x in 0..1, y in 0..3), y counted from the top of the cell.
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass
class Canvas:
    """The drawn chart: ``cells[row][col]`` braille masks and the series that owns each cell."""

    width: int
    height: int
    cells: list[list[int]]
    owner: list[list[int]]
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def row_text(self, row: int) -> str:
        return "".join(chr(BRAILLE_BASE + m) if m else " " for m in self.cells[row])


def ema(points: Sequence[Point], weight: float = 0.6) -> list[Point]:
    """TensorBoard-style smoothing (debiased exponential moving average); gaps stay gaps."""
    out: list[Point] = []
    last = 0.0
    n = 0
    for x, y in points:
        if y is None or not math.isfinite(y):
            out.append((x, None))
            continue
        last = last * weight + (1 - weight) * y
        n += 1
        out.append((x, last / (1 - weight**n)))
    return out


def _ok(y: float | None) -> TypeGuard[float]:
    """A real y: event logs carry NaN/Inf as ``None``; ``y == y`` also rejects a stray NaN."""
    return y is not None and y == y and y != math.inf and y != -math.inf


class Summary:
    """Prefix sums of one series, kept in step with an append-mostly list of points.

    Binning a series into ``w`` dot columns then costs O(w log n) instead of O(n), so a
    10,000-step history redraws as fast as a short one. :meth:`sync` appends only the new
    points; when the list was cut (a resumed run drops the steps after its checkpoint) or
    rewritten, it starts over. Points must come in ascending x (RunHistory keeps them so).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.last: Point | None = None
        self.xs: list[float] = []
        self.cum: list[float] = [0.0]
        self.cnt: list[int] = [0]
        self.y_min = math.inf
        self.y_max = -math.inf

    @classmethod
    def of(cls, points: Sequence[Point]) -> Summary:
        summary = cls()
        summary.sync(points)
        return summary

    def sync(self, points: Sequence[Point]) -> Summary:
        n = len(points)
        if n < self.n or (self.n and points[self.n - 1] != self.last):
            self.reset()
        cum, cnt, xs = self.cum, self.cnt, self.xs
        total, count = cum[-1], cnt[-1]
        y_min, y_max = self.y_min, self.y_max
        for x, y in points[self.n :]:
            xs.append(x)
            if _ok(y):
                total += y
                count += 1
                y_min = min(y_min, y)
                y_max = max(y_max, y)
            cum.append(total)
            cnt.append(count)
        self.y_min, self.y_max = y_min, y_max
        self.n = n
        self.last = points[-1] if n else None
        return self

    @property
    def empty(self) -> bool:
        return self.cnt[-1] == 0

    def x_range(self) -> tuple[float, float]:
        return self.xs[0], self.xs[-1]

    def column_means(self, x0: float, x1: float, columns: int) -> list[float | None]:
        """Mean y of the points falling into each of ``columns`` equal x-slices of [x0, x1]."""
        out: list[float | None] = []
        if columns <= 1 or x1 <= x0:
            lo, hi = bisect.bisect_left(self.xs, x0), bisect.bisect_right(self.xs, x1)
            c = self.cnt[hi] - self.cnt[lo]
            mean = (self.cum[hi] - self.cum[lo]) / c if c else None
            return [mean if i == columns // 2 else None for i in range(columns)]
        step = (x1 - x0) / (columns - 1)
        xs, cum, cnt = self.xs, self.cum, self.cnt
        edge = bisect.bisect_left(xs, x0 - step / 2)
        for col in range(columns):
            nxt = bisect.bisect_left(xs, x0 + (col + 0.5) * step, lo=edge)
            if col == columns - 1:
                nxt = bisect.bisect_right(xs, x1 + step / 2, lo=edge)
            c = cnt[nxt] - cnt[edge]
            out.append((cum[nxt] - cum[edge]) / c if c else None)
            edge = nxt
        return out


def finite_range(series: Sequence[Sequence[Point]]) -> tuple[float, float, float, float] | None:
    """(x_min, x_max, y_min, y_max) over finite points of every series, or None when there are none."""
    return summaries_range([Summary.of(points) for points in series])


def summaries_range(summaries: Sequence[Summary]) -> tuple[float, float, float, float] | None:
    live = [s for s in summaries if not s.empty]
    if not live:
        return None
    return (
        min(s.xs[0] for s in live),
        max(s.xs[-1] for s in live),
        min(s.y_min for s in live),
        max(s.y_max for s in live),
    )


def nice_range(lo: float, hi: float) -> tuple[float, float]:
    """Pad a degenerate or tight range so a flat line sits mid-chart."""
    if hi == lo:
        pad = abs(hi) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _rows(means: list[float | None], y0: float, y1: float, dots_h: int) -> list[int | None]:
    yscale = (dots_h - 1) / (y1 - y0) if y1 > y0 else 0.0
    bottom = dots_h - 1
    return [None if m is None else min(bottom, max(0, bottom - int((m - y0) * yscale + 0.5))) for m in means]


def draw(
    series: Sequence[Sequence[Point]] | Sequence[Summary],
    width: int,
    height: int,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
) -> Canvas | None:
    """Draw every series (point lists, or their :class:`Summary`) into a ``width × height`` cell
    canvas. None when nothing is finite."""
    width, height = max(1, width), max(1, height)
    summaries = [s if isinstance(s, Summary) else Summary.of(s) for s in series]
    bounds = summaries_range(summaries)
    if bounds is None:
        return None
    x0, x1 = x_range or (bounds[0], bounds[1])
    y0, y1 = y_range or nice_range(bounds[2], bounds[3])
    dots_w, dots_h = width * 2, height * 4
    cells = [[0] * width for _ in range(height)]
    owner = [[-1] * width for _ in range(height)]

    def plot(dx: int, dy: int, index: int) -> None:
        row, col = dy // 4, dx // 2
        cells[row][col] |= _DOT[dx % 2][dy % 4]
        owner[row][col] = index

    for index, summary in enumerate(summaries):
        if summary.empty:
            continue
        rows = _rows(summary.column_means(x0, x1, dots_w), y0, y1, dots_h)
        prev_x: int | None = None
        prev_y = 0
        for dx, dy in enumerate(rows):
            if dy is None:
                continue
            if prev_x is None:
                plot(dx, dy, index)
            else:
                # Sparse steps leave empty columns: interpolate across them, and join each
                # column to the one before with a vertical run so steep moves stay connected.
                span = dx - prev_x
                last = prev_y
                for k in range(1, span + 1):
                    y = int(round(prev_y + (dy - prev_y) * k / span))
                    lo, hi = sorted((last, y))
                    for yy in range(lo, hi + 1) if abs(y - last) > 1 else (y,):
                        plot(prev_x + k, yy, index)
                    last = y
            prev_x, prev_y = dx, dy
    return Canvas(width, height, cells, owner, (x0, x1), (y0, y1))


def axis_label(value: float) -> str:
    """A y-axis label at most 7 characters wide."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)  # an overflowing range: "inf", never an exception in render
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        # Scientific with a bare exponent (-7.0e-5, not -7.0e-05), one digit less when still too wide.
        for digits in (1, 0):
            mantissa, exponent = f"{value:.{digits}e}".split("e")
            text = f"{mantissa}e{int(exponent)}"
            if len(text) <= 7:
                return text
        return text
    if abs(value) >= 100:
        return f"{value:.0f}"
    for digits in (3, 2, 1):  # -0.00702 is 8 wide: -0.007
        text = f"{value:.{digits}g}"
        if len(text) <= 7:
            break
    return text
