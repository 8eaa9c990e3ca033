"""The Eval view of one run: its evaluation report, base vs tuned, and the prompts where they differ most.

Pushed on the current mode's stack (``R`` on the runs screen or the monitor). A thread worker reads
the run's reports once (``core.eval.report.list_reports``) and posts :class:`EvalViewScreen.Loaded`;
every key after that (sort, filter, ``[``/``]``, moving in the list) works on what was read, so
no key touches the disk. The rows and wording come from ``core.eval.view`` (pure, unit-tested).

Layout, top to bottom: the header (run, checkpoint, base, material, judge, which evaluation), one
line per unreadable report file, the numbers table, the prompts list, and the highlighted prompt
in full (both answers wrapped, the judge's verdict and reason, the expected fact with ✓/✗).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from ...core.eval import view
from ..messages import Snapshot
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen, RowTable

if TYPE_CHECKING:
    from ...core.eval.report import EvalReport, UnreadableReport

PROMPT_WIDTHS = (3, 30, 5, 5, 7, 5, 4)


class EvalViewScreen(ConsoleScreen):
    """One run's evaluation. ``s`` sorts the prompts, ``f`` filters them, ``[``/``]`` older/newer evals."""

    MAIN_WIDGET = "#eval-prompts"
    BINDINGS = [
        Binding("escape", "back", "Back", id="eval.back", tooltip="Back to where R was pressed"),
        Binding("s", "cycle_sort", "Sort", id="eval.sort", tooltip="Sort the prompts: most different, words saved, verdict, file order"),
        Binding("f", "cycle_filter", "Filter", id="eval.filter", tooltip="Show all prompts, the facts lost, or the judge's losses"),
        Binding("left_square_bracket", "older", "Older eval", id="eval.older", key_display="[",
                tooltip="The run's previous evaluation"),
        Binding("right_square_bracket", "newer", "Newer eval", id="eval.newer", key_display="]",
                tooltip="The run's next evaluation"),
    ]

    @dataclass
    class Loaded(Snapshot):
        """The run's reports (oldest first) and the files that could not be read, read once on mount.

        Posted by the ``eval-view-load`` thread worker (:meth:`_load`).
        """

        reports: list[EvalReport]
        unreadable: list[UnreadableReport]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.reports: list[EvalReport] = []
        self.unreadable: list[UnreadableReport] = []
        self.loaded = False
        self.index = -1
        """Which report is shown (index into :attr:`reports`)."""
        self.sort = view.SORTS[0]
        self.filter = view.FILTERS[0]
        self.order: list[int] = []
        """Prompt indexes in the list's order (after filter and sort)."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="eval-header")
        yield TextPanel(id="eval-bad")
        metrics: DataTable[Any] = DataTable(id="eval-metrics", cursor_type="none", zebra_stripes=True)
        metrics.can_focus = False
        yield metrics
        yield TextPanel(id="eval-prompts-title")
        yield RowTable(id="eval-prompts", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="eval-detail-box"):
            yield Static(id="eval-detail")
        yield ConsoleFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#eval-header", TextPanel).show(Text(f"Evaluation of {self.run_id} · reading…", style="dim"))
        self.query_one("#eval-bad", TextPanel).display = False
        self.query_one("#eval-prompts", DataTable).focus()
        self._load(self.services.runs_root / self.run_id)

    @work(thread=True, exclusive=True, group="eval-view-load", exit_on_error=False, description="read the evaluation reports")
    def _load(self, run_path: Path) -> None:
        from ...core.eval.report import list_reports

        good, bad = list_reports(run_path)
        self.post_message(self.Loaded(good, bad))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.reports, self.unreadable = message.reports, message.unreadable
        self.loaded = True
        self.index = len(self.reports) - 1
        bad = self.query_one("#eval-bad", TextPanel)
        if self.unreadable:
            lines = Text()
            for exc in self.unreadable:
                if lines:
                    lines.append("\n")
                lines.append(f"✗ unreadable: {Path(exc.path).name}: {exc.why}")
            bad.show(lines)
            bad.styles.height = min(3, len(self.unreadable))
            bad.display = True
        self._show()

    # --- drawing --------------------------------------------------------------------------------
    @property
    def report(self) -> EvalReport | None:
        return self.reports[self.index] if 0 <= self.index < len(self.reports) else None

    def _show(self) -> None:
        report = self.report
        with self.app.batch_update():
            self._show_header(report)
            self._fill_metrics(report)
            self._fill_prompts(report)
            self._show_detail()
        self.refresh_bindings()

    def _show_header(self, report: EvalReport | None) -> None:
        header = self.query_one("#eval-header", TextPanel)
        if report is None:
            text = Text(f"{self.run_id} has no evaluation yet.", style="bold")
            text.append("\nPress E on the runs screen or the monitor to start one "
                        "(or run dpo-tui eval RUN_ID); its report shows here when it ends.", style="")
            header.show(text)
            return
        lines = view.header_lines(report)
        text = Text(lines[0], style="bold")
        for line in lines[1:]:
            text.append("\n" + line)
        if len(self.reports) > 1:
            text.append(f" · {self.index + 1} of {len(self.reports)} ([ ] older/newer)", style="dim")
        header.show(text)

    def _fill_metrics(self, report: EvalReport | None) -> None:
        table = self.query_one("#eval-metrics", DataTable)
        table.clear(columns=True)
        table.display = report is not None
        if report is None:
            return
        rows = [row.cells() for row in view.metric_rows(report)]
        for index, label in enumerate(view.METRIC_HEADER):
            width = max(len(label), *(len(row[index]) for row in rows))
            table.add_column(label, key=f"m{index}", width=width)
        for row, cells in zip(view.metric_rows(report), rows, strict=True):
            styled: list[Any] = list(cells)
            if row.significant:
                styled[5] = Text(cells[5], style="bold")
            table.add_row(*styled)

    def _fill_prompts(self, report: EvalReport | None) -> None:
        table = self.query_one("#eval-prompts", DataTable)
        title = self.query_one("#eval-prompts-title", TextPanel)
        table.clear(columns=not table.columns)
        if not table.columns:
            for label, width in zip(view.PROMPT_HEADER, PROMPT_WIDTHS, strict=True):
                table.add_column(label, key=label, width=width)
        rows = report.prompts if report is not None else []
        self.order = view.prompt_order(rows, self.sort, self.filter)
        table.display = title.display = report is not None
        for i in self.order:
            table.add_row(*view.prompt_cells(i, rows[i], PROMPT_WIDTHS[1]), key=str(i))
        if report is not None:
            shown = f"{len(self.order)} of {len(rows)}" if self.filter != "all" else f"{len(rows)}"
            title.show(Text(f"prompts ({shown}) · sorted by {self.sort} (s) · showing {self.filter} (f)", style="bold"))

    @on(DataTable.RowHighlighted, "#eval-prompts")
    def _highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#eval-detail", Static)
        report = self.report
        self.query_one("#eval-detail-box").display = report is not None
        row = self.highlighted_row
        if report is None or row is None:
            detail.update(Text("No prompt matches this filter (f shows all)." if report is not None and report.prompts
                               else "", style="dim"))
            return
        info = view.prompt_detail(row)
        text = Text(info.prompt, style="bold")
        for label, value in info.lines:
            text.append(f"\n{label}: ", style="bold")
            text.append(value)
        detail.update(text)

    @property
    def highlighted_row(self) -> Any:
        report = self.report
        table = self.query_one("#eval-prompts", DataTable)
        if report is None or not self.order or not 0 <= table.cursor_row < len(self.order):
            return None
        return report.prompts[self.order[table.cursor_row]]

    # --- actions --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("cycle_sort", "cycle_filter"):
            return True if self.report is not None and self.report.prompts else None
        if action == "older":
            return True if self.index > 0 else None
        if action == "newer":
            return True if 0 <= self.index < len(self.reports) - 1 else None
        return True

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        if action in ("older", "newer"):
            return f"{self.run_id} has no {'older' if action == 'older' else 'newer'} evaluation."
        if action in ("cycle_sort", "cycle_filter"):
            return "This evaluation has no prompts to sort or filter."
        return None

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cycle_sort(self) -> None:
        self.sort = view.SORTS[(view.SORTS.index(self.sort) + 1) % len(view.SORTS)]
        self._fill_prompts(self.report)
        self._show_detail()

    def action_cycle_filter(self) -> None:
        self.filter = view.FILTERS[(view.FILTERS.index(self.filter) + 1) % len(view.FILTERS)]
        self._fill_prompts(self.report)
        self._show_detail()

    def action_older(self) -> None:
        if self.index > 0:
            self.index -= 1
            self._show()

    def action_newer(self) -> None:
        if self.index < len(self.reports) - 1:
            self.index += 1
            self._show()

