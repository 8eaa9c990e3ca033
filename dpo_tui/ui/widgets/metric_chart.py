"""A braille line chart of one or more metric series against the step, with axis labels.

The parent sets :meth:`MetricChart.set_series` (attributes down); the widget only redraws. The
drawing itself is :func:`dpo_tui.ui.chart.draw`, a pure function. Series take the colours of the
component classes ``metric-chart--series-0`` … ``-5`` in order (app.tcss, theme variables), and
:class:`ChartLegend` shows the same colours beside each series' label (the compare screen's legend).
"""

from __future__ import annotations

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
        self.reference: float | None = None
        """A y value drawn as a dotted guide (e.g. ln 2 on the loss chart)."""
        self._drawn: tuple[Any, Text] | None = None
        """The last render and what it was drawn from: a repaint of unchanged data (a mode switch, a
        neighbour's refresh, a key) reuses it instead of re-binning every point."""

    def set_series(self, series: list[Series], smooth: bool = False) -> None:
        if [s.label for s in series] != [s.label for s in self.series]:
            self._summaries.clear()
        self.series = series
        self.smooth = smooth
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
        # Series only grow (or are replaced by a new list): the list, its length and its last point say
        # whether anything a redraw would show changed.
        key = (width, height, self.title, self.smooth, self.show_latest, self.reference, title_style, axis_style,
               tuple(styles), tuple((s.label, id(s.points), len(s.points), s.points[-1] if s.points else None) for s in self.series))
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
            head.append(" (smoothed)", style=axis_style)
        out.append_text(head)
        plot_h = height - 2
        plot_w = width - Y_LABEL_WIDTH - 1
        if plot_h < 1 or plot_w < 4:
            return out
        if self.smooth:
            canvas = chart.draw([chart.ema(s.points) for s in self.series], plot_w, plot_h)
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
