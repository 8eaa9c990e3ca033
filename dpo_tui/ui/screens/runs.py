"""The runs overview: every run in the runs root, newest first, refreshed live.

A thread worker lists the root (``core.runs.RunLister``, ``reconcile=False``: a dead run shows as
crashed, and nothing is written to a run folder while you merely look; an ended run whose files
did not change keeps its row without being re-read) every
``runs_refresh_interval`` seconds and posts :class:`RunsScreen.RunsListed`; the handler owns the
table. ``core.runs`` is imported inside the worker: it pulls in pydantic, which the first paint
must not wait for.

The table shows the rows that match the filter (``/``), in the chosen order (``o`` cycles the sort
column, ``O`` reverses it). A refresh that changes no row order only rewrites the cells that
changed, so 1,000 runs refresh every two seconds without rebuilding the table. Rows are keyed by
run id. ``space`` selects runs (``g`` a whole group, e.g. a β ladder) and ``v`` compares them.

The row builders (:func:`row_cells`, :func:`detail_text`, :func:`exit_text`, :func:`sort_summaries`,
:func:`matches`) are pure functions, unit-tested directly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Input

from ...core.errors import UserError
from ..format import duration, metric
from ..messages import Notice
from ..run_actions import resume_run, stop_run
from ..services import root_label
from ..widgets.header import StatusHeader
from ..widgets.inputs import FieldInput
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen

if TYPE_CHECKING:
    from ...core.runs import RunSummary

# (key, label, width). Fixed widths: auto-sized columns re-measure on idle and can paint a
# frame at the label widths first; fixed ones also keep snapshots stable. The run column
# grows to the longest id (up to 48 cells).
COLUMNS = (
    ("sel", " ", 1),
    ("run", "run", 30),
    ("state", "state", 10),
    ("progress", "steps", 7),
    ("loss", "loss", 6),
    ("margin", "margin", 6),
    ("acc", "acc", 4),
    ("beta", "β", 5),
    ("loss_type", "loss type", 9),
    ("rank", "rank", 4),
    ("group", "group", 16),
    ("model", "model", 14),
    ("dataset", "dataset", 14),
    ("ran", "ran", 6),
    ("age", "age", 6),
    ("exit", "exit reason", 40),
)
ACTIVE = frozenset({"queued", "starting", "running", "stopping"})
RESUMABLE = frozenset({"stopped", "failed", "crashed"})
SELECTED_MARK = "●"


def model_label(model: str | None) -> str:
    if not model:
        return "–"
    if model == "sample":
        return "tiny-chat"
    return Path(model).name if "/" in model and Path(model).is_absolute() else model


def dataset_label(dataset: str | None) -> str:
    if not dataset:
        return "–"
    if dataset == "sample":
        return "sample"
    path = Path(dataset)
    return path.name if path.is_absolute() or dataset.startswith((".", "~")) else dataset


def queue_position(phase: str | None) -> int | None:
    """2 for the supervisor's ``queued: position 2, gpu0 busy with …``; None when not waiting."""
    match = re.match(r"queued: position (\d+)", phase or "")
    return int(match.group(1)) if match else None


def state_cell(summary: RunSummary) -> Text:
    state = summary.state + ("?" if summary.stalled else "")
    position = queue_position(summary.phase) if summary.state == "queued" else None
    if position is not None:
        state = f"queued #{position}"
    style = {
        "running": "bold",
        "starting": "bold",
        "stopping": "bold",
        "finished": "",
        "failed": "bold reverse",
        "crashed": "bold reverse",
        "unreadable": "dim",
    }.get(summary.state, "")
    return Text(state, style=style)


def unreadable_reason(summary: RunSummary) -> str:
    """The folder's problem without the ``Run <id>:`` prefix the row already shows."""
    error = summary.error or "unreadable"
    return error.removeprefix(f"Run {summary.id}: ").removeprefix(f"Run {summary.id} ")


def exit_text(summary: RunSummary) -> str:
    """Why a run ended: ``oom: CUDA out of memory``, ``cancelled``, ``unreadable: no config.json``."""
    if summary.error is not None:
        return f"unreadable: {unreadable_reason(summary)}"
    if summary.state in ("failed", "crashed"):
        kind = summary.kind or summary.state
        return f"{kind}: {summary.message}" if summary.message else kind
    if summary.state == "stopped":
        return summary.kind or "stopped"
    if summary.state == "finished":
        return "finished"
    return ""


def run_seconds(summary: RunSummary, now: float) -> float | None:
    """How long it trained (so far): from the injected clock, never the machine's."""
    if not summary.started_at:
        return None
    if summary.ended_at:
        return summary.ended_at - summary.started_at
    return now - summary.started_at if summary.state in ACTIVE else None


def row_cells(summary: RunSummary, now: float, selected: bool = False) -> list[Any]:
    progress = f"{summary.step}/{summary.max_steps}" if summary.max_steps else (str(summary.step) if summary.step else "–")
    acc = "–" if summary.accuracy is None else f"{summary.accuracy:.2f}"
    age = duration(now - summary.created_at) if summary.created_at else "–"
    return [
        Text(SELECTED_MARK, style="bold") if selected else "",
        summary.id,
        state_cell(summary),
        progress,
        metric(summary.loss),
        metric(summary.margin),
        acc,
        "–" if summary.beta is None else f"{summary.beta:g}",
        summary.loss_type or "–",
        "full" if summary.method == "full" else ("–" if summary.lora_rank is None else str(summary.lora_rank)),
        summary.group or "–",
        model_label(summary.model),
        dataset_label(summary.dataset),
        duration(run_seconds(summary, now)),
        age,
        exit_text(summary),
    ]


def detail_text(summary: RunSummary | None, now: float) -> Text:
    if summary is None:
        return Text("")
    if summary.error:
        return Text(f"{summary.id}: unreadable: {unreadable_reason(summary)} · d deletes the folder")
    parts = [f"{summary.id}: {summary.state}"]
    if summary.kind and summary.state in ("failed", "crashed", "stopped"):
        parts[0] += f" ({summary.kind})"
    if summary.state == "queued" and summary.phase:  # the phase holds the queue position
        parts[0] = f"{summary.id}: {summary.phase.replace('queued: ', 'queued, ', 1)}"
    if summary.message and summary.state in ("failed", "crashed"):
        parts.append(summary.message)
    if summary.hint and summary.state in RESUMABLE:
        parts.append(summary.hint)
    if summary.stalled:
        parts.append("no heartbeat for minutes: the trainer may be hung")
    if summary.beta is not None:
        rank = "full" if summary.method == "full" else f"r={summary.lora_rank}"
        parts.append(f"{model_label(summary.model)} β={summary.beta:g} {summary.loss_type} {rank}")
    seconds = run_seconds(summary, now)
    if seconds is not None:
        parts.append(f"ran {duration(seconds)}")
    if summary.dataset:
        parts.append(f"data {dataset_label(summary.dataset)}")
    if summary.group:
        parts.append(f"group {summary.group}")
    return Text(" · ".join(parts))


# --- filter and sort -----------------------------------------------------------------------------
def haystack(summary: RunSummary) -> str:
    fields = (summary.id, summary.state, summary.model, model_label(summary.model), summary.dataset, summary.group, summary.kind)
    return " ".join(f for f in fields if f).lower()


def matches(summary: RunSummary, query: str) -> bool:
    """Every whitespace-separated term of ``query`` occurs in the run's id, model, dataset, group or state."""
    text = haystack(summary)
    return all(term in text for term in query.lower().split())


@dataclass(frozen=True)
class SortKey:
    name: str
    """What the header says: ``sorted by β``."""
    value: Callable[[RunSummary, float], Any]
    descending: bool
    """The natural direction (newest, highest accuracy… first)."""


STATE_ORDER = {"running": 0, "stopping": 1, "starting": 2, "queued": 3, "failed": 4, "crashed": 5, "stopped": 6, "finished": 7, "unreadable": 8}

SORT_KEYS: tuple[SortKey, ...] = (
    SortKey("newest", lambda s, now: s.id, True),
    SortKey("state", lambda s, now: STATE_ORDER.get(s.state, 9), False),
    SortKey("β", lambda s, now: s.beta, False),
    SortKey("loss", lambda s, now: s.loss, False),
    SortKey("margin", lambda s, now: s.margin, True),
    SortKey("accuracy", lambda s, now: s.accuracy, True),
    SortKey("duration", lambda s, now: run_seconds(s, now), True),
    SortKey("group", lambda s, now: s.group or None, False),
    SortKey("model", lambda s, now: model_label(s.model) if s.model else None, False),
)


def sort_summaries(summaries: Iterable[RunSummary], key: SortKey, reverse: bool, now: float) -> list[RunSummary]:
    """Sorted by ``key`` (its natural direction, flipped by ``reverse``); runs without a value last,
    ties newest first."""
    items = sorted(summaries, key=lambda s: s.id, reverse=True)
    known = [s for s in items if key.value(s, now) is not None]
    unknown = [s for s in items if key.value(s, now) is None]
    descending = key.descending != reverse
    # Python's sort is stable (reverse=True too), so ties keep the newest-first order.
    known.sort(key=lambda s: key.value(s, now), reverse=descending)
    return known + unknown


class RunsScreen(ConsoleScreen):
    """Base screen of the ``runs`` mode."""

    BINDINGS = [
        Binding("enter", "open_monitor", "Monitor", id="runs.monitor", priority=True, tooltip="Open the highlighted run's monitor"),
        Binding("s", "stop_run", "Stop", id="runs.stop", tooltip="Stop the highlighted run"),
        Binding("r", "resume_run", "Resume", id="runs.resume", tooltip="Resume the highlighted run"),
        Binding("c", "chat_run", "Chat", id="runs.chat", show=False, tooltip="Chat with the highlighted run"),
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
    ]

    class RunsListed(Message):
        def __init__(self, summaries: list[RunSummary], error: str | None = None, generation: int = 0) -> None:
            super().__init__()
            self.summaries = summaries
            self.error = error
            self.generation = generation
            """Which refresh this answers: a listing started earlier never replaces a later one."""

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
        self._lister: Any = None
        """core.runs.RunLister, made in the worker (core.runs is not imported before the first paint)."""
        self._lister_lock = threading.Lock()
        self._generation = 0
        self._shown_generation = 0

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="runs-root")
        yield FieldInput(placeholder="/ filter: id, model, dataset, group or state", id="runs-filter", compact=True)
        table: DataTable[Any] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        self._add_columns(table, COLUMNS[1][2])
        yield table
        yield TextPanel(id="runs-detail")
        yield Footer(compact=True)  # this screen has many keys: compact keeps Quit and Keys on screen at 80 columns

    def _add_columns(self, table: DataTable[Any], id_width: int) -> None:
        self._id_width = id_width
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=id_width if key == "run" else width)

    def on_mount(self) -> None:
        from ..app import run_folder_names

        services = self.app.services  # type: ignore[attr-defined]
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
            self.call_after_refresh(self.app.first_screen_ready)  # type: ignore[attr-defined]
            self.call_after_refresh(self.refresh_runs)  # after the first paint: the import holds the GIL
        else:
            self.refresh_runs()
        if services.runs_refresh_interval > 0:
            self.set_interval(services.runs_refresh_interval, self._tick, name="runs-refresh")

    def _tick(self) -> None:
        if self.is_current:  # hidden behind another mode: nothing to refresh (resume re-reads)
            self.refresh_runs()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.refresh_runs()

    def refresh_runs(self) -> None:
        self._generation += 1
        self._list(self.app.services.runs_root, self._generation)  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False, description="list the runs")
    def _list(self, root: Path, generation: int) -> None:
        # ``exclusive`` cannot interrupt a thread: a slow listing may still be running when a newer
        # one (after a delete, say) starts, so each listing carries its generation and the lister
        # is used by one thread at a time.
        from ...core.runs import RunLister

        with self._lister_lock:
            if self._lister is None:
                self._lister = RunLister()
            try:
                summaries = self._lister.list(root, reconcile=False)
            except UserError as exc:
                self.post_message(self.RunsListed([], exc.render(), generation=generation))
                return
            except OSError as exc:
                self.post_message(self.RunsListed([], f"cannot read {root}: {exc.strerror or exc}", generation=generation))
                return
        self.post_message(self.RunsListed(summaries, generation=generation))

    @on(RunsListed)
    def _runs_listed(self, message: RunsListed) -> None:
        if message.generation and message.generation < self._shown_generation:
            return  # an older listing that finished late
        self._shown_generation = max(self._shown_generation, message.generation)
        self.summaries = {s.id: s for s in message.summaries}
        self.error = message.error
        self.listed = True
        self.selected &= set(self.summaries)
        if self._pending_group is not None:
            members = {s.id for s in message.summaries if s.group == self._pending_group}
            if members:
                self.selected |= members
                self._pending_group = None
        self._fill()
        self.call_after_refresh(self.app.first_screen_ready)  # type: ignore[attr-defined]

    # --- the table ------------------------------------------------------------------------------
    @property
    def sort_key(self) -> SortKey:
        return SORT_KEYS[self.sort_index]

    @property
    def filter_text(self) -> str:
        return self.query_one("#runs-filter", Input).value.strip()

    def visible(self) -> list[RunSummary]:
        """The runs the table shows: those matching the filter, in the chosen order."""
        query = self.filter_text
        chosen = [s for s in self.summaries.values() if matches(s, query)] if query else list(self.summaries.values())
        return sort_summaries(chosen, self.sort_key, self.sort_reverse, self.app.services.clock())  # type: ignore[attr-defined]

    def _fill(self) -> None:
        """Show :meth:`visible` in the table: rewrite changed cells when the order is unchanged, else
        rebuild the rows in one batch (one layout, however many runs)."""
        now = self.app.services.clock()  # type: ignore[attr-defined]
        table = self.query_one("#runs-table", DataTable)
        highlighted = self.highlighted_id
        rows = [(s.id, row_cells(s, now, s.id in self.selected)) for s in self.visible()]
        order = [run_id for run_id, _ in rows]
        id_width = max([COLUMNS[1][2], *(min(48, len(run_id)) for run_id in order)])
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
        services = self.app.services  # type: ignore[attr-defined]
        summaries = list(self.summaries.values())
        root = root_label(services, max(16, self.app.size.width // 2))
        if self.error:
            header = Text(self.error)
        elif not self.listed:
            header = Text(f"Runs in {root}  ·  reading…", style="dim")
        elif summaries:
            active = sum(1 for s in summaries if s.state in ACTIVE)
            parts = [f"Runs in {root}", f"{len(summaries)} run{'' if len(summaries) == 1 else 's'}, {active} active"]
            if self.filter_text:
                parts.append(f"{len(self.shown)} match")
            if self.sort_index or self.sort_reverse:
                natural = self.sort_key.descending
                arrow = "↓" if natural != self.sort_reverse else "↑"
                parts.append(f"sorted by {self.sort_key.name} {arrow}")
            if self.selected:
                parts.append(f"{len(self.selected)} selected")
            header = Text("  ·  ".join(parts))
        else:
            header = Text(f"No runs yet in {root}. Press n to set one up.")
        header.no_wrap, header.overflow = True, "ellipsis"  # one line: a wrapped tail would be hidden
        self.query_one("#runs-root", TextPanel).show(header)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        summary = self.highlighted
        self.query_one("#runs-detail", TextPanel).show(detail_text(summary, self.app.services.clock()))  # type: ignore[attr-defined]

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
        if action in ("open_monitor", "chat_run"):
            return True if summary is not None and summary.error is None else None
        if action == "stop_run":
            return True if summary is not None and summary.state in ACTIVE else None
        if action == "resume_run":
            return True if summary is not None and summary.state in RESUMABLE else None
        if action in ("toggle_select", "delete_run", "copy_command"):
            return True if summary is not None else None
        if action == "compare":
            return True if len(self._compare_ids()) >= 2 else None
        if action in ("select_group", "cancel_group"):
            return True if summary is not None and summary.group else None
        return True

    def action_open_monitor(self) -> None:
        if self._filter_focused():  # enter in the filter box: back to the table
            self.query_one("#runs-table", DataTable).focus()
            return
        summary = self.highlighted
        if summary is not None and summary.error is None:
            self.app.open_monitor(summary.id)  # type: ignore[attr-defined]

    def action_chat_run(self) -> None:
        if self.highlighted_id:
            self.app.open_chat(self.highlighted_id)  # type: ignore[attr-defined]

    def action_new_run(self) -> None:
        self.app.switch_mode("setup")

    def action_refresh(self) -> None:
        self.refresh_runs()

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

    def _compare_ids(self) -> list[str]:
        """The selected readable runs, in table order (hidden ones after)."""
        ids = [run_id for run_id in self.shown if run_id in self.selected]
        ids += sorted((run_id for run_id in self.selected if run_id not in self.shown), reverse=True)
        return [run_id for run_id in ids if run_id in self.summaries and self.summaries[run_id].error is None]

    def action_compare(self) -> None:
        from .compare import CompareScreen

        ids = self._compare_ids()
        if len(ids) < 2:
            self.notify("Select two or more runs first (space, or g for a whole group).", title="Compare", severity="warning")
            return
        self.app.push_screen(CompareScreen(ids))

    # --- stop, resume, delete, cancel a ladder --------------------------------------------------
    def action_stop_run(self) -> None:
        from .confirm import ConfirmDialog

        summary = self.highlighted
        if summary is None:
            return
        run_id = summary.id
        hard = summary.state == "stopping"
        if summary.state == "queued":
            detail = "It has not started: it leaves the queue and is marked stopped (cancelled)."
        elif hard:
            detail = "It is already stopping. SIGKILL ends it at once, without a final checkpoint."
        else:
            detail = "The trainer saves a checkpoint at the next step and exits; resume continues from it."

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop(run_id, hard)

        self.app.push_screen(ConfirmDialog(f"{'Kill' if hard else 'Stop'} {run_id}?", detail, yes="Stop"), answer)

    @work(thread=True, group="runs-action", exit_on_error=False, description="stop a run")
    def _stop(self, run_id: str, now: bool) -> None:
        self.post_message(stop_run(self.app.services.runs_root, run_id, now))  # type: ignore[attr-defined]

    def action_resume_run(self) -> None:
        if self.highlighted_id:
            self._resume(self.highlighted_id)

    @work(thread=True, group="runs-action", exit_on_error=False, description="resume a run")
    def _resume(self, run_id: str) -> None:
        self.post_message(resume_run(self.app.services.runs_root, run_id))  # type: ignore[attr-defined]

    def action_delete_run(self) -> None:
        from .confirm import ConfirmDialog

        summary = self.highlighted
        if summary is None:
            return
        run_id = summary.id
        if summary.state in ACTIVE:
            self.notify(f"{run_id} is {summary.state}: stop it first (s), then delete it.", title="Delete", severity="error", markup=False)
            return
        detail = "This removes the run folder with its checkpoints, adapter and logs. It cannot be undone."

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete(run_id)

        self.app.push_screen(ConfirmDialog(f"Delete {run_id}?", detail, yes="Delete"), answer)

    @work(thread=True, group="runs-action", exit_on_error=False, description="delete a run")
    def _delete(self, run_id: str) -> None:
        from ...core import runs

        path = self.app.services.runs_root / run_id  # type: ignore[attr-defined]
        try:
            runs.delete(runs.Run(path))
        except UserError as exc:
            text = exc.render()
            if "unreadable" in exc.summary:
                text += f"\nIts status cannot be read, so whether it still runs is unknown. If it does not: rm -r {path}"
            self.post_message(Notice("Delete", text, "error"))
            return
        except OSError as exc:
            self.post_message(Notice("Delete", f"Cannot delete {run_id}: {exc.strerror or exc}", "error"))
            return
        self.post_message(Notice("Delete", f"Deleted {run_id}."))

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
        from .confirm import ConfirmDialog

        summary = self.highlighted
        if summary is None or not summary.group:
            return
        group = summary.group
        members = [s for s in self.summaries.values() if s.group == group and s.state in ACTIVE]
        if not members:
            self.notify(f"Nothing to cancel: no run of '{group}' is queued or running.", title="Cancel ladder", markup=False)
            return
        queued = [s.id for s in members if s.state == "queued"]
        running = [s.id for s in members if s.state != "queued"]
        lines = []
        if running:
            lines.append(f"Stops {', '.join(running)} (it saves a checkpoint at the next step).")
        if queued:
            lines.append(f"Cancels {len(queued)} queued run{'s' if len(queued) != 1 else ''}.")
        paths = [s.path for s in members]

        def answer(yes: bool | None) -> None:
            if yes:
                self._cancel_group(group, paths)

        self.app.push_screen(ConfirmDialog(f"Cancel the ladder '{group}'?", " ".join(lines), yes="Cancel ladder", no="Keep"), answer)

    @work(thread=True, group="runs-action", exit_on_error=False, description="cancel a ladder")
    def _cancel_group(self, group: str, paths: list[Path]) -> None:
        """``dpo-tui ladder --cancel GROUP``: stop each active member (a queued one leaves the queue)."""
        from ...core import runs

        done, problems = [], []
        for path in paths:
            try:
                runs.stop(runs.Run(path))
            except UserError as exc:
                if "is not running" not in exc.summary:  # it ended meanwhile: nothing to cancel
                    problems.append(exc.summary)
                continue
            except OSError as exc:
                problems.append(f"{path.name}: {exc.strerror or exc}")
                continue
            done.append(path.name)
        if problems:
            self.post_message(Notice("Cancel ladder", "\n".join(problems), "error"))
        self.post_message(Notice("Cancel ladder", f"'{group}': stopping or cancelling {len(done)} run{'s' if len(done) != 1 else ''}."))

    @on(Notice)
    def _after_action(self) -> None:
        self.refresh_runs()
