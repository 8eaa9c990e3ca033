"""The runs overview: every run in the runs root, newest first, refreshed live.

A thread worker lists the root (``core.runs.RunLister``, ``reconcile=False``: a dead run shows as
crashed, and nothing is written to a run folder while you merely look; an ended run whose files did
not change keeps its row without being re-read) every ``runs_refresh_interval`` seconds and posts
:class:`RunsScreen.RunsListed`; the handler owns the table. ``core.runs`` is imported inside the worker: it pulls in pydantic, which the first paint
must not wait for.

The table shows the rows that match the filter (``/``), in the chosen order (``o`` cycles the sort
column, ``O`` reverses it). A refresh that changes no row order only rewrites the cells that
changed, so 1,000 runs refresh every two seconds without rebuilding the table. Rows are keyed by
run id. ``space`` selects runs (``g`` a whole group, e.g. a β ladder) and ``v`` compares them; ``L``
evaluates the highlighted run's whole group and ``T`` shows its trade-off chart.

The row builders (cells, header and detail lines, filter, sort) are pure functions in ``runs_rows.py``;
the delete and cancel-a-ladder questions are in ``runs_dialogs.py``; the keys this screen shares with
the monitor (chat, pairs, export, evaluate, stop, resume) are ``ui/run_job_actions.py``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from ...core.errors import UserError
from ...core.run_states import ACTIVE_STATES, RESUMABLE_STATES
from ..eval_watch import EvalPanel
from ..export_watch import ExportPanel
from ..messages import Latest, Notice, Snapshot
from ..run_job_actions import RunJobScreen
from ..services import root_label
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.inputs import FieldInput
from ..widgets.resident_banner import ResidentBanner, release_resident_chat
from ..widgets.run_panels import TextPanel
from .base import RowTable
from .eval_dialog import open_eval, open_results
from .runs_dialogs import ask_cancel_group, ask_delete
from .runs_rows import (
    COLUMNS,
    SORT_KEYS,
    SortKey,
    detail_text,
    exit_text,
    header_text,
    matches,
    queue_position,
    row_cells,
    run_id_width,
    sort_summaries,
)

if TYPE_CHECKING:
    from ...core.runs import RunLister, RunSummary

__all__ = ["RunsScreen", "SORT_KEYS", "exit_text", "matches", "queue_position", "sort_summaries"]


class RunsScreen(RunJobScreen):
    """Base screen of the ``runs`` mode."""

    MAIN_WIDGET = "#runs-table"
    BINDINGS = [
        Binding("enter", "open_monitor", "Monitor", id="runs.monitor", priority=True, tooltip="Open the highlighted run's monitor"),
        Binding("s", "stop_run", "Stop", id="runs.stop", tooltip="Stop the highlighted run"),
        Binding("r", "resume_run", "Resume", id="runs.resume", tooltip="Resume the highlighted run"),
        Binding("c", "chat_run", "Chat", id="runs.chat", show=False, tooltip="Chat with the highlighted run"),
        Binding("P", "pairs_from_run", "Pairs from this run", id="runs.pairs", show=False,
                tooltip="Round two: generate candidate pairs from this run's tuned model"),
        Binding("e", "export_run", "Export", id="runs.export", show=False,
                tooltip="Export the run: merged weights, GGUF, Ollama, hub"),
        Binding("E", "evaluate", "Evaluate", id="runs.evaluate", show=False,
                tooltip="Evaluate the highlighted run (or the selected runs) against the base"),
        Binding("R", "eval_results", "Eval results", id="runs.eval-results", show=False,
                tooltip="The highlighted run's evaluation; with several selected, the trade-off chart"),
        Binding("L", "evaluate_group", "Evaluate ladder", id="runs.evaluate-group", show=False,
                tooltip="Evaluate every run of the highlighted run's group (a β ladder) against the base, loaded once"),
        Binding("T", "tradeoff", "Trade-off", id="runs.tradeoff", show=False,
                tooltip="The trade-off chart of the highlighted run's group (or of the selected runs)"),
        Binding("space", "toggle_select", "Select", id="runs.select", key_display="␣", tooltip="Select or unselect the run (to compare)"),
        Binding("v", "compare", "Compare", id="runs.compare", tooltip="Overlay the selected runs' curves, diff configs"),
        Binding("slash", "focus_filter", "Filter", id="runs.filter", tooltip="Filter by id, model, dataset, group or state"),
        Binding("o", "cycle_sort", "Sort", id="runs.sort", show=False, tooltip="Sort by the next column (state, β, loss, …)"),
        Binding("O", "reverse_sort", "Reverse", id="runs.sort-reverse", show=False, tooltip="Reverse the sort order"),
        Binding("g", "select_group", "Select group", id="runs.select-group", show=False,
                tooltip="Select the run's whole group (a β ladder)"),
        Binding("d,delete", "delete_run", "Delete", id="runs.delete", show=False, tooltip="Delete the run's folder (asks first)"),
        Binding("y", "copy_command", "Copy command", id="runs.copy", show=False, tooltip="Copy the run's `dpo-tui train` command line"),
        Binding("x", "cancel_group", "Cancel ladder", id="runs.cancel-group", show=False,
                tooltip="Cancel the ladder: stop and unqueue its runs"),
        Binding("n", "new_run", "New run", id="runs.new", show=False, tooltip="Set up a new run (model → dataset → experiment)"),
        Binding("escape", "clear", "Clear", id="runs.clear", show=False, tooltip="Leave or clear the filter, then the selection"),
        Binding("ctrl+l", "refresh", "Refresh", id="runs.refresh", show=False, tooltip="Re-read the runs root now"),
        Binding("f10", "release_chat", "Release chat", id="runs.release_chat", show=False,
                tooltip="Stop the chat worker Chat keeps loaded and free its memory for the runs"),
    ]

    @dataclass
    class RunsListed(Snapshot):
        """The whole runs root, listed (``error`` says why it could not be, with no summaries).

        Posted by the ``runs-list`` thread worker (:meth:`_list`) on every refresh: the timer, a
        return to this screen, a delete. ``ticket`` is the refresh's, from ``_listings`` (0: not
        asked for by a refresh, always shown).
        """

        summaries: list[RunSummary]
        error: str | None = None
        ticket: int = 0
        evals: dict[str, str] = field(default_factory=dict)
        """Run id → its newest evaluation in a few words (runs without one are left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.summaries: dict[str, RunSummary] = {}
        self.listed = False
        self.error: str | None = None
        self.selected: set[str] = set()
        self.sort_index = 0
        self.sort_reverse = False
        self.shown: list[str] = []
        """Run ids in table order (after filter and sort)."""
        self._cells: dict[str, list[Any]] = {}
        self._id_width = 0
        self._pending_group: str | None = None
        self._lister: RunLister | None = None
        self._eval_lines: Any = None
        """``core.eval.view.SummaryCache``, made in the listing worker (it imports pydantic)."""
        self.evals: dict[str, str] = {}
        """Made in the worker (core.runs is not imported before the first paint)."""
        self._lister_lock = threading.Lock()
        self._listings = Latest()
        """Tickets of listings: one started earlier never replaces a later one on screen."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="runs-root")
        yield ResidentBanner(id="runs-resident")
        yield FieldInput(placeholder="/ filter: id, model, dataset, group or state", id="runs-filter", compact=True)
        table = RowTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        self._add_columns(table, COLUMNS[1][2])
        yield table
        yield TextPanel(id="runs-detail")
        yield ExportPanel(self.services.runs_root, id="runs-exports")
        yield EvalPanel(self.services.runs_root, id="runs-evals")
        yield ConsoleFooter(compact=True)  # this screen has many keys: compact keeps Quit and Keys on screen at 80 columns

    def _add_columns(self, table: DataTable[Any], id_width: int) -> None:
        self._id_width = id_width
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=id_width if key == "run" else width)

    def on_mount(self) -> None:
        from ..app import run_folder_names

        services = self.services
        self.query_one("#runs-root", TextPanel).show(Text(f"Runs in {root_label(services, max(16, self.app.size.width // 2))}  ·  reading…", style="dim"))
        # Paint the run ids at once (a directory listing); states and metrics follow from the
        # worker, which needs core.runs (pydantic, ~150 ms to import).
        table = self.query_one("#runs-table", DataTable)
        table.focus()
        if self._pending_group:
            self.query_one("#runs-filter", Input).value = self._pending_group
        for name in run_folder_names(services.runs_root):
            table.add_row("", name, Text("…", style="dim"), *[""] * (len(COLUMNS) - 3), key=name)
        if table.row_count:
            self.call_after_refresh(self.console.first_screen_ready)
            self.call_after_refresh(self.refresh_runs)  # after the first paint: the import holds the GIL
        else:
            self.refresh_runs()
        if services.runs_refresh_interval > 0:
            self.set_interval(services.runs_refresh_interval, self._tick, name="runs-refresh")

    def _tick(self) -> None:
        if self.is_current:  # hidden behind another mode: nothing to refresh (resume re-reads)
            self.refresh_runs()

    def on_screen_resume(self) -> None:
        if self.is_mounted:  # after the switch is painted: the listing thread would hold the GIL during it
            self.call_after_refresh(self.refresh_runs)

    def refresh_runs(self) -> None:
        self._list(self.services.runs_root, self._listings.issue())

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False, description="list the runs")
    def _list(self, root: Path, ticket: int) -> None:
        # ``exclusive`` cannot interrupt a thread: a slow listing may still be running when a newer
        # one (after a delete, say) starts, so each listing carries its ticket and the lister
        # is used by one thread at a time.
        from ...core.eval.view import SummaryCache
        from ...core.runs import RunLister

        with self._lister_lock:
            if self._lister is None:
                self._lister = RunLister()
                self._eval_lines = SummaryCache(short=True)
            try:
                summaries = self._lister.list(root, reconcile=False)
            except UserError as exc:
                self.post_message(self.RunsListed([], exc.render(), ticket=ticket))
                return
            except OSError as exc:
                self.post_message(self.RunsListed([], f"cannot read {root}: {exc.strerror or exc}", ticket=ticket))
                return
            evals = self._eval_lines.lines({s.id: s.path for s in summaries if s.error is None})
        self.post_message(self.RunsListed(summaries, ticket=ticket, evals=evals))

    @on(RunsListed)
    def _runs_listed(self, message: RunsListed) -> None:
        if not self._listings.accept(message.ticket):
            return  # an older listing that finished late
        self.summaries = {s.id: s for s in message.summaries}
        self.error = message.error
        self.evals = message.evals
        self.listed = True
        self.selected &= set(self.summaries)
        if self._pending_group is not None:
            members = {s.id for s in message.summaries if s.group == self._pending_group}
            if members:
                self.selected |= members
                self._pending_group = None
        self._fill()
        self.call_after_refresh(self.console.first_screen_ready)

    # --- the table ------------------------------------------------------------------------------
    @property
    def sort_key(self) -> SortKey:
        return SORT_KEYS[self.sort_index]

    @property
    def filter_text(self) -> str:
        return self.query_one("#runs-filter", Input).value.strip()

    def on_resize(self) -> None:
        if self.listed:
            self._fill()  # the run column's width follows the screen's (see runs_rows.run_id_width)

    def visible_runs(self) -> list[RunSummary]:
        """The runs the table shows: those matching the filter, in the chosen order."""
        query = self.filter_text
        chosen = [s for s in self.summaries.values() if matches(s, query)] if query else list(self.summaries.values())
        return sort_summaries(chosen, self.sort_key, self.sort_reverse, self.services.clock())

    def _fill(self) -> None:
        """Show :meth:`visible_runs` in the table: rewrite changed cells when the order is unchanged, else
        rebuild the rows in one batch (one layout, however many runs)."""
        now = self.services.clock()
        table = self.query_one("#runs-table", DataTable)
        highlighted = self.highlighted_id
        visible = self.visible_runs()
        room = max(0, (self.size.width or 80) - 2)  # the scrollbar is always shown (app.tcss #runs-table)
        id_width = run_id_width(max([0, *(len(s.id) for s in visible)]), room)
        rows = [(s.id, row_cells(s, now, s.id in self.selected, id_width)) for s in visible]
        order = [run_id for run_id, _ in rows]
        with self.app.batch_update():
            if order == self.shown and id_width == self._id_width and len(order) == table.row_count:
                keys = [key for key, _, _ in COLUMNS]
                for run_id, cells in rows:
                    old = self._cells.get(run_id)
                    for index, (key, value) in enumerate(zip(keys, cells, strict=True)):
                        if old is None or old[index] != value:
                            table.update_cell(run_id, key, value)
            else:
                table.clear(columns=id_width != self._id_width)
                if not table.columns:
                    self._add_columns(table, id_width)
                for run_id, cells in rows:
                    table.add_row(*cells, key=run_id)
                if highlighted in order:
                    table.move_cursor(row=order.index(highlighted), animate=False)
            self.shown = order
            self._cells = dict(rows)
            self._show_header()
            self._show_detail()
        self.refresh_bindings()

    def _show_header(self) -> None:
        root = root_label(self.services, max(16, self.app.size.width // 2))
        shown = len(self.shown) if self.filter_text else None
        sort = (self.sort_key, self.sort_reverse) if self.sort_index or self.sort_reverse else None
        header = header_text(root, list(self.summaries.values()), self.error, self.listed, shown, sort, len(self.selected))
        self.query_one("#runs-root", TextPanel).show(header)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        summary = self.highlighted
        evals = self.evals.get(summary.id) if summary is not None else None
        self.query_one("#runs-detail", TextPanel).show(detail_text(summary, self.services.clock(), evals))

    @property
    def highlighted_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty or shrinking table
            return None
        return str(key.value) if key.value is not None else None

    @property
    def highlighted(self) -> RunSummary | None:
        run_id = self.highlighted_id
        return self.summaries.get(run_id) if run_id else None

    # --- filter ---------------------------------------------------------------------------------
    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self) -> None:
        if self.listed:
            self._fill()

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

    def show_group(self, group: str) -> None:
        """Filter to ``group`` and select its runs (once listed: a ladder may have just been created)."""
        self._pending_group = group
        if self.is_mounted:  # else on_mount applies it
            self.query_one("#runs-filter", Input).value = group
            self.query_one("#runs-table", DataTable).focus()
            self.refresh_runs()

    # --- actions --------------------------------------------------------------------------------
    def _filter_focused(self) -> bool:
        return self.focused is not None and self.focused.id == "runs-filter"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        summary = self.highlighted
        if action in ("open_monitor", "chat_run", "export_run", "pairs_from_run", "evaluate", "eval_results"):
            return True if summary is not None and summary.error is None else None
        if action == "stop_run":
            return True if summary is not None and summary.state in ACTIVE_STATES else None
        if action == "resume_run":
            return True if summary is not None and summary.state in RESUMABLE_STATES else None
        if action in ("toggle_select", "delete_run", "copy_command"):
            return True if summary is not None else None
        if action == "compare":
            return True if len(self._compare_ids()) >= 2 else None
        if action in ("select_group", "cancel_group", "evaluate_group"):
            return True if summary is not None and summary.group else None
        if action == "tradeoff":
            return True if len(self._compare_ids()) >= 2 or (summary is not None and summary.group) else None
        return True

    def action_open_monitor(self) -> None:
        if self._filter_focused():  # enter in the filter box: back to the table
            self.query_one("#runs-table", DataTable).focus()
            return
        summary = self.highlighted
        if summary is not None and summary.error is None:
            self.console.open_monitor(summary.id)

    def job_run_id(self) -> str | None:
        return self.highlighted_id

    def job_run_state(self) -> str:
        return self.highlighted.state if self.highlighted is not None else ""

    def eval_run_ids(self) -> list[str]:
        """The selected runs when two or more are (a ladder's group), else the highlighted one."""
        ids = self._compare_ids()
        return ids if len(ids) >= 2 else self._compare_ids({self.highlighted_id} if self.highlighted_id else set())

    def group_ids(self) -> list[str]:
        """Every readable run of the highlighted run's group, in table order (hidden ones after)."""
        group = self.highlighted.group if self.highlighted is not None else None
        return self._compare_ids({s.id for s in self.summaries.values() if group and s.group == group})

    def action_evaluate_group(self) -> None:
        open_eval(self, self.group_ids())

    def action_tradeoff(self) -> None:
        selected = self._compare_ids()
        open_results(self, selected if len(selected) >= 2 else self.group_ids())

    def action_new_run(self) -> None:
        self.app.switch_mode("setup")

    def action_refresh(self) -> None:
        self.refresh_runs()

    def action_release_chat(self) -> None:
        release_resident_chat(self)

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_clear(self) -> None:
        filt = self.query_one("#runs-filter", Input)
        if self._filter_focused():
            self.query_one("#runs-table", DataTable).focus()
        elif filt.value:
            filt.value = ""
        elif self.selected:
            self.selected.clear()
            self._fill()

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORT_KEYS)
        self.sort_reverse = False
        self._fill()

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._fill()

    # --- selection and compare ------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        run_id = self.highlighted_id
        if run_id is None:
            return
        self.selected ^= {run_id}
        self._fill()
        self.query_one("#runs-table", DataTable).action_cursor_down()

    def action_select_group(self) -> None:
        summary = self.highlighted
        if summary is None or not summary.group:
            return
        members = {s.id for s in self.summaries.values() if s.group == summary.group}
        if members <= self.selected:
            self.selected -= members
        else:
            self.selected |= members
        self._fill()

    def _compare_ids(self, chosen: set[str] | None = None) -> list[str]:
        """The readable runs of ``chosen`` (the selection), in table order (hidden ones after, newest first)."""
        chosen = self.selected if chosen is None else chosen
        ids = [run_id for run_id in self.shown if run_id in chosen]
        ids += sorted((run_id for run_id in chosen if run_id not in self.shown), reverse=True)
        return [run_id for run_id in ids if run_id in self.summaries and self.summaries[run_id].error is None]

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        ids = self._compare_ids()
        if action == "compare" and len(ids) < 2:
            have = f"{len(ids)} selected" if ids else "none selected"
            return f"Compare needs two or more runs ({have}): space selects the highlighted run, g its whole group."
        if action in ("evaluate_group", "tradeoff") and not self.group_ids():
            what = "Evaluate ladder" if action == "evaluate_group" else "Trade-off"
            more = "" if action == "evaluate_group" else " (or two or more selected runs)"
            return f"{what} needs a run of a group, such as a β ladder{more}: the highlighted run has no group."
        return None

    def action_compare(self) -> None:
        from .compare import CompareScreen

        ids = self._compare_ids()
        why = self.why_not("compare", ())
        if why:
            self.notify(why, title="Compare", severity="warning")
            return
        self.app.push_screen(CompareScreen(ids))

    # --- delete, copy, cancel a ladder ---------------------------------------------------------
    def action_delete_run(self) -> None:
        summary = self.highlighted
        if summary is not None:
            ask_delete(self, summary)

    def action_copy_command(self) -> None:
        summary = self.highlighted
        if summary is None:
            return
        from ...core.runs import Run
        from ..form import command_line

        try:
            config = Run(summary.path).config()
        except (UserError, OSError) as exc:
            text = exc.summary if isinstance(exc, UserError) else str(exc)
            self.notify(f"No command line for {summary.id}: {text}", title="Copy", severity="error", markup=False)
            return
        command = command_line(config)
        self.app.copy_to_clipboard(command)
        self.notify(command, title="Copied the command line", markup=False, timeout=8)

    def action_cancel_group(self) -> None:
        summary = self.highlighted
        if summary is not None and summary.group:
            ask_cancel_group(self, summary.group, list(self.summaries.values()))

    @on(Notice)
    def _after_action(self) -> None:
        self.refresh_runs()
