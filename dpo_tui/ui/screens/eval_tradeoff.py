"""The trade-off view of several runs (a β ladder): behaviour change against quality kept, one point per run.

Pushed by ``R`` on the runs screen with two or more runs selected. A thread worker reads each run's
newest report and config once and posts :class:`TradeoffScreen.Loaded`; ``y`` switches the quality
axis (facts correct, the judge's win rate, held-out pair accuracy) on what was read. Points are
labelled by what differs between the runs (``core.compare.legend_labels``: ``β=0.05``), so the
operator picks β from this one screen. The plot and the table rows come from ``core.eval.view``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable

from ...core.eval import view
from ..messages import Snapshot
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.metric_chart import SERIES_CLASSES, SERIES_COLOURS
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen

if TYPE_CHECKING:
    from ...core.eval.report import EvalReport


@dataclass
class Ladder:
    """(run id, label, newest report) of each evaluated run, and one line per run left out."""

    items: list[tuple[str, str, EvalReport]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def load_ladder(root: Path, run_ids: list[str]) -> Ladder:
    """Each run's newest report; labels from what differs in their configs (blocking I/O)."""
    from ...core.compare import legend_labels
    from ...core.errors import UserError
    from ...core.eval.report import list_reports
    from ...core.runs import Run

    found: list[tuple[str, dict[str, Any], EvalReport]] = []
    missing: list[str] = []
    for run_id in run_ids:
        good, bad = list_reports(root / run_id)
        if not good:
            why = f"{len(bad)} unreadable report{'s' if len(bad) != 1 else ''}" if bad else "no evaluation yet"
            missing.append(f"{run_id}: {why}")
            continue
        try:
            config = Run(root / run_id).config().model_dump(mode="json")
        except (UserError, OSError):
            config = {"beta": good[-1].beta}
        config.pop("group", None)
        found.append((run_id, config, good[-1]))
    if all(report.beta is not None for _, _, report in found):
        found.sort(key=lambda item: item[2].beta or 0.0)  # a ladder reads in β order, like its chart
    ids = [run_id for run_id, _, _ in found]
    labels = legend_labels([c for _, c, _ in found], ids) if found else []
    return Ladder([(run_id, label, report) for (run_id, _, report), label in zip(found, labels, strict=True)], missing)


class TradeoffChart(Widget):
    """The scatter plot (``core.eval.view.scatter``), each point in its run's series colour."""

    COMPONENT_CLASSES = {*SERIES_CLASSES, "tradeoff-chart--axis", "tradeoff-chart--base"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.points: list[view.TradeoffPoint] = []
        self.y_ref: float | None = None

    def set_points(self, points: list[view.TradeoffPoint], y_ref: float | None) -> None:
        self.points, self.y_ref = points, y_ref
        self.refresh()

    def render(self) -> Text:
        plot = view.scatter(self.points, self.size.width, self.size.height, self.y_ref)
        if plot is None:
            return Text("No run has both values for this axis (y switches it).", style="dim")
        axis = self.get_component_rich_style("tradeoff-chart--axis")
        base = self.get_component_rich_style("tradeoff-chart--base")
        colours = [self.get_component_rich_style(c) for c in SERIES_CLASSES]
        marks: dict[int, list[tuple[int, int]]] = {}
        for row, col, index in plot.marks:
            marks.setdefault(row, []).append((col, index))
        text = Text(no_wrap=True, overflow="crop")
        for r, line in enumerate(plot.rows):
            if r:
                text.append("\n")
            styled = Text(line, style=axis)
            for col in [i for i, ch in enumerate(line) if ch in (view.BASE_MARK, "┄", "┊")]:
                styled.stylize(base, col, col + 1)
            for col, index in marks.get(r, []):
                colour = colours[index % SERIES_COLOURS]
                end = col + 1
                label = self.points[index].label
                if line[col + 2: col + 2 + len(label)] == label:
                    end = col + 2 + len(label)
                styled.stylize(colour, col, end)
            text.append_text(styled)
        return text


class TradeoffScreen(ConsoleScreen):
    """Several runs' evaluations on one chart. ``y`` switches the quality axis."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="tradeoff.back", tooltip="Back to the runs overview"),
        Binding("y", "cycle_y", "Y axis", id="tradeoff.y-axis",
                tooltip="Quality axis: facts correct, judge win rate, or held-out pair accuracy"),
    ]

    @dataclass
    class Loaded(Snapshot):
        """Each run's newest report with its legend label, read once when the screen mounts.

        Posted by the ``tradeoff-load`` thread worker (:meth:`_load`).
        """

        ladder: Ladder

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.ladder: Ladder | None = None
        self.y_kind = view.Y_KINDS[0]

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="tradeoff-title")
        yield TradeoffChart(id="tradeoff-chart")
        yield DataTable(id="tradeoff-table", cursor_type="row", zebra_stripes=True)
        yield TextPanel(id="tradeoff-missing")
        yield ConsoleFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#tradeoff-title", TextPanel).show(Text(f"Trade-off of {len(self.run_ids)} runs · reading…", style="dim"))
        self.query_one("#tradeoff-missing", TextPanel).display = False
        self._load(self.services.runs_root, self.run_ids)

    @work(thread=True, exclusive=True, group="tradeoff-load", exit_on_error=False, description="read the evaluation reports")
    def _load(self, root: Path, run_ids: list[str]) -> None:
        self.post_message(self.Loaded(load_ladder(root, run_ids)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.ladder = ladder = message.ladder
        table = self.query_one("#tradeoff-table", DataTable)
        rows = view.tradeoff_rows(ladder.items)
        for index, label in enumerate(view.TRADEOFF_HEADER):
            width = max(len(label), *(len(row[index]) for row in rows)) if rows else len(label)
            table.add_column(label, key=f"t{index}", width=min(width, 24))
        table.add_rows(rows)
        missing = self.query_one("#tradeoff-missing", TextPanel)
        if ladder.missing:
            missing.show(Text("left out: " + "; ".join(ladder.missing), style="dim"))
            missing.display = True
        self._draw()

    def _draw(self) -> None:
        ladder = self.ladder or Ladder()
        reports = [report for _, _, report in ladder.items]
        title = Text(f"Trade-off of {len(ladder.items)} evaluated run{'s' if len(ladder.items) != 1 else ''}", style="bold")
        title.append(f" · x: words change · y: {self.y_kind} · ◆ base")
        self.query_one("#tradeoff-title", TextPanel).show(title)
        points = view.tradeoff_points(ladder.items, self.y_kind)
        self.query_one(TradeoffChart).set_points(points, view.base_y(reports, self.y_kind))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cycle_y(self) -> None:
        self.y_kind = view.Y_KINDS[(view.Y_KINDS.index(self.y_kind) + 1) % len(view.Y_KINDS)]
        self._draw()
