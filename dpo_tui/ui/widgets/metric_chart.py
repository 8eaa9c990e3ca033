"""A braille line chart of one or more metric series against the step, with axis labels.

The parent sets :meth:`MetricChart.set_series` (attributes down); the widget only redraws. The
drawing itself is :func:`dpo_tui.ui.chart.draw`, a pure function. Series take the colours of the
component classes ``metric-chart--series-0`` … ``-5`` in order (app.tcss, theme variables), and
:class:`ChartLegend` shows the same colours beside each series' label (the compare screen's legend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from .. import chart
from ..format import metric

Y_LABEL_WIDTH = 7
SERIES_COLOURS = 6
"""Distinct series colours; a seventh series reuses the first."""
SERIES_CLASSES = tuple(f"metric-chart--series-{i}" for i in range(SERIES_COLOURS))


@dataclass
class Series:
    label: str
    points: Sequence[chart.Point]


class _Smoothed:
    """:func:`chart.ema` of one append-mostly series, extended by the new points only, with the
    :class:`chart.Summary` of the result: a smoothed chart redraws at the cost of an unsmoothed one
    instead of smoothing every point on every tick. Starts over when the series was cut or rewritten."""

    def __init__(self, weight: float = 0.6) -> None:
        self.weight = weight
        self.reset()

    def reset(self) -> None:
        self.source_n = 0
        self.source_last: chart.Point | None = None
        self.points: list[chart.Point] = []
        self.level = 0.0
        self.finite = 0
        self.summary = chart.Summary()

    def sync(self, points: Sequence[chart.Point]) -> chart.Summary:
        n, w = len(points), self.weight
        if n < self.source_n or (self.source_n and points[self.source_n - 1] != self.source_last):
            self.reset()
        for x, y in points[self.source_n :]:  # the same arithmetic as chart.ema, so the same drawing
            if y is None or not math.isfinite(y):
                self.points.append((x, None))
                continue
            self.level = self.level * w + (1 - w) * y
            self.finite += 1
            self.points.append((x, self.level / (1 - w**self.finite)))
        self.source_n = n
        self.source_last = points[-1] if n else None
        return self.summary.sync(self.points)


def _data_key(series: Sequence[Series]) -> tuple[Any, ...]:
    """What a drawing of ``series`` depends on, cheaply: series only grow or are replaced, so each one's
    length and first, middle and last points tell a change. Not the list's identity: the eval series
    are rebuilt on every monitor tick (``core.health.eval_points``) with the same points."""
    return tuple((s.label, len(s.points), s.points[0], s.points[len(s.points) // 2], s.points[-1]) if s.points else (s.label, 0)
                 for s in series)


class MetricChart(Widget):
    """``title`` on the first line with the latest values, the plot, then the step axis."""

    COMPONENT_CLASSES = {
        *SERIES_CLASSES,
        "metric-chart--axis",
        "metric-chart--title",
    }

    def __init__(self, title: str, *, latest: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.show_latest = latest
        """Show each series' latest value after the title (off where a legend names the series)."""
        self.series: list[Series] = []
        self.smooth = False
        self._summaries: dict[str, chart.Summary] = {}
        self._smoothed: dict[str, _Smoothed] = {}
        self.reference: float | None = None
        """A y value drawn as a dotted guide (e.g. ln 2 on the loss chart)."""
        self._drawn: tuple[Any, Text] | None = None
        """The last render and what it was drawn from: a repaint of unchanged data (a mode switch, a
        neighbour's refresh, a key) reuses it instead of re-binning every point."""

    def set_series(self, series: list[Series], smooth: bool = False) -> None:
        if [s.label for s in series] != [s.label for s in self.series]:
            self._summaries.clear()
            self._smoothed.clear()
        unchanged = smooth == self.smooth and _data_key(series) == _data_key(self.series)
        self.series = series
        self.smooth = smooth
        if not unchanged:  # a monitor tick with no new point must not repaint the chart
            self.refresh()

    def _latest(self, styles: Sequence[Style]) -> Text:
        """The latest value of each series; with several series each label carries a swatch in its
        line's colour, which makes the title the chart's legend."""
        out = Text()
        if not self.show_latest:
            return out
        for index, s in enumerate(self.series):
            value = next((y for _, y in reversed(s.points) if y is not None), None) if s.points else None
            out.append(" ")
            if len(self.series) > 1:
                out.append("━", style=styles[index % len(styles)])
                out.append(f"{s.label} ")
            out.append(metric(value))
        return out

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        title_style = self.get_component_rich_style("metric-chart--title", partial=True)
        axis_style = self.get_component_rich_style("metric-chart--axis", partial=True)
        styles = [self.get_component_rich_style(name, partial=True) for name in SERIES_CLASSES]
        key = (width, height, self.title, self.smooth, self.show_latest, self.reference, title_style, axis_style,
               tuple(styles), _data_key(self.series))
        if self._drawn is not None and self._drawn[0] == key:
            return self._drawn[1].copy()
        out = self._draw(width, height, title_style, axis_style, styles)
        self._drawn = (key, out.copy())
        return out

    def _draw(self, width: int, height: int, title_style: Style, axis_style: Style, styles: list[Style]) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        head = Text(self.title, style=title_style)
        head.append_text(self._latest(styles))
        if self.smooth:
            # The longest note that fits: a title that wraps would push the plot down over the next chart.
            note = next((n for n in (" (smoothed)", " (ema)") if head.cell_len + len(n) <= width), "")
            head.append(note, style=axis_style)
        head.truncate(max(0, width), overflow="ellipsis")
        out.append_text(head)
        plot_h = height - 2
        plot_w = width - Y_LABEL_WIDTH - 1
        if plot_h < 1 or plot_w < 4:
            return out
        if self.smooth:
            canvas = chart.draw([self._smoothed.setdefault(s.label, _Smoothed()).sync(s.points) for s in self.series], plot_w, plot_h)
        else:
            # Prefix sums kept across redraws: only the points added since the last one cost anything.
            summaries = [self._summaries.setdefault(s.label, chart.Summary()).sync(s.points) for s in self.series]
            canvas = chart.draw(summaries, plot_w, plot_h)
        if canvas is None:
            for row in range(plot_h):
                out.append("\n")
                if row == plot_h // 2:
                    out.append(" " * (Y_LABEL_WIDTH + 1) + "waiting for data…", style=axis_style)
            out.append("\n")
            return out
        y0, y1 = canvas.y_range
        labels = {0: chart.axis_label(y1), plot_h - 1: chart.axis_label(y0)}
        if plot_h >= 5:
            labels[(plot_h - 1) // 2] = chart.axis_label((y0 + y1) / 2)
        for row in range(plot_h):
            out.append("\n")
            out.append(labels.get(row, "").rjust(Y_LABEL_WIDTH)[:Y_LABEL_WIDTH] + "┤" if row in labels else " " * Y_LABEL_WIDTH + "│", style=axis_style)
            line = canvas.cells[row]
            owners = canvas.owner[row]
            run_start = 0
            for col in range(1, plot_w + 1):
                if col == plot_w or owners[col] != owners[run_start]:
                    chunk = "".join(chr(chart.BRAILLE_BASE + m) if m else " " for m in line[run_start:col])
                    owner = owners[run_start]
                    style: Style | None = styles[owner % len(styles)] if owner >= 0 else None
                    out.append(chunk, style=style)
                    run_start = col
        x0, x1 = canvas.x_range
        left, right = f"{x0:g}", f"step {x1:g}"
        gap = max(1, plot_w - len(left) - len(right))
        out.append("\n" + " " * Y_LABEL_WIDTH + "└" + left + " " * gap + right, style=axis_style)
        return out


class ChartLegend(Widget):
    """One line: ``━━ β=0.05  ━━ β=0.1  ━━ β=0.5``, each swatch in its series' chart colour."""

    COMPONENT_CLASSES = {*SERIES_CLASSES, "metric-chart--axis"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.labels: list[str] = []
        self.prefix = ""

    def set_labels(self, labels: list[str], prefix: str = "") -> None:
        self.labels = list(labels)
        self.prefix = prefix
        self.refresh()

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        if self.prefix:
            out.append(self.prefix, style=self.get_component_rich_style("metric-chart--axis", partial=True))
        for index, label in enumerate(self.labels):
            style = self.get_component_rich_style(SERIES_CLASSES[index % SERIES_COLOURS], partial=True)
            if index or self.prefix:
                out.append("  ")
            out.append("━━ ", style=style)
            out.append(label, style=style)
        return out
