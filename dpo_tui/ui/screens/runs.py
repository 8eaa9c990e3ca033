"""The runs overview: every run in the runs root, newest first, refreshed live.

A thread worker lists the root (``core.runs.list_runs``, which shows dead runs as crashed without writing to them) every
``runs_refresh_interval`` seconds and posts :class:`RunsScreen.RunsListed`; the handler owns the
table. ``core.runs`` is imported inside the worker: it pulls in pydantic, which the first paint
must not wait for.

Later issues (compare overlays, β ladders) add columns and bindings here; row keys are run ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer

from ...core.errors import UserError
from ..format import duration, metric
from ..messages import Notice
from ..services import root_label
from ..widgets.header import StatusHeader
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen

if TYPE_CHECKING:
    from ...core.runs import RunSummary

# (key, label, width). Fixed widths: auto-sized columns re-measure on idle and can paint a
# frame at the label widths first; fixed ones also keep snapshots stable. The run column
# grows to the longest id (up to 48 cells).
COLUMNS = (
    ("run", "run", 30),
    ("state", "state", 9),
    ("progress", "steps", 7),
    ("loss", "loss", 6),
    ("margin", "margin", 6),
    ("acc", "acc", 4),
    ("beta", "β", 5),
    ("loss_type", "loss type", 9),
    ("rank", "rank", 4),
    ("model", "model", 14),
    ("age", "age", 6),
)
ACTIVE = frozenset({"queued", "starting", "running", "stopping"})
RESUMABLE = frozenset({"stopped", "failed", "crashed"})


def model_label(model: str | None) -> str:
    if not model:
        return "–"
    if model == "sample":
        return "tiny-chat"
    return Path(model).name if "/" in model and Path(model).is_absolute() else model


def state_cell(summary: RunSummary) -> Text:
    state = summary.state + ("?" if summary.stalled else "")
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


def row_cells(summary: RunSummary, now: float) -> list[Any]:
    progress = f"{summary.step}/{summary.max_steps}" if summary.max_steps else (str(summary.step) if summary.step else "–")
    acc = "–" if summary.accuracy is None else f"{summary.accuracy:.2f}"
    age = duration(now - summary.created_at) if summary.created_at else "–"
    return [
        summary.id,
        state_cell(summary),
        progress,
        metric(summary.loss),
        metric(summary.margin),
        acc,
        "–" if summary.beta is None else f"{summary.beta:g}",
        summary.loss_type or "–",
        "full" if summary.method == "full" else ("–" if summary.lora_rank is None else str(summary.lora_rank)),
        model_label(summary.model),
        age,
    ]


def detail_text(summary: RunSummary | None, now: float) -> Text:
    if summary is None:
        return Text("")
    if summary.error:
        return Text(f"{summary.id}: {summary.error}")
    parts = [f"{summary.id}: {summary.state}"]
    if summary.kind and summary.state in ("failed", "crashed", "stopped"):
        parts[0] += f" ({summary.kind})"
    if summary.message and summary.state in ("failed", "crashed"):
        parts.append(summary.message)
    if summary.hint and summary.state in RESUMABLE:
        parts.append(summary.hint)
    if summary.stalled:
        parts.append("no heartbeat for minutes: the trainer may be hung")
    if summary.beta is not None:
        rank = "full" if summary.method == "full" else f"r={summary.lora_rank}"
        parts.append(f"{model_label(summary.model)} β={summary.beta:g} {summary.loss_type} {rank}")
    if summary.duration is not None:
        end = summary.ended_at or now
        parts.append(f"ran {duration(end - (summary.started_at or end))}")
    if summary.dataset:
        parts.append(f"data {Path(summary.dataset).name if summary.dataset != 'sample' else 'sample'}")
    if summary.group:
        parts.append(f"group {summary.group}")
    return Text(" · ".join(parts))


class RunsScreen(ConsoleScreen):
    """Base screen of the ``runs`` mode."""

    BINDINGS = [
        Binding("enter", "open_monitor", "Monitor", id="runs.monitor", priority=True, tooltip="Open the highlighted run's monitor"),
        Binding("s", "stop_run", "Stop", id="runs.stop", tooltip="Stop the highlighted run"),
        Binding("r", "resume_run", "Resume", id="runs.resume", tooltip="Resume the highlighted run"),
        Binding("c", "chat_run", "Chat", id="runs.chat", tooltip="Chat with the highlighted run"),
        Binding("n", "new_run", "New run", id="runs.new", tooltip="Set up a new run (model → dataset → experiment)"),
        Binding("ctrl+l", "refresh", "Refresh", id="runs.refresh", show=False, tooltip="Re-read the runs root now"),
    ]

    class RunsListed(Message):
        def __init__(self, summaries: list[RunSummary], error: str | None = None) -> None:
            super().__init__()
            self.summaries = summaries
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.summaries: dict[str, RunSummary] = {}
        self.listed = False
        self._id_width = 0

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="runs-root")
        table: DataTable[Any] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        self._add_columns(table, COLUMNS[0][2])
        yield table
        yield TextPanel(id="runs-detail")
        yield Footer()

    def _add_columns(self, table: DataTable[Any], id_width: int) -> None:
        self._id_width = id_width
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=id_width if key == "run" else width)

    def on_mount(self) -> None:
        from ..app import run_folder_names

        services = self.app.services  # type: ignore[attr-defined]
        self.query_one("#runs-root", TextPanel).show(Text(f"Runs in {root_label(services)}  ·  reading…", style="dim"))
        # Paint the run ids at once (a directory listing); states and metrics follow from the
        # worker, which needs core.runs (pydantic, ~150 ms to import).
        table = self.query_one("#runs-table", DataTable)
        for name in run_folder_names(services.runs_root):
            table.add_row(name, Text("…", style="dim"), *[""] * (len(COLUMNS) - 2), key=name)
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
        self._list(self.app.services.runs_root)  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False, description="list the runs")
    def _list(self, root: Path) -> None:
        from ...core.runs import list_runs

        try:
            summaries = list_runs(root, reconcile=False)
        except UserError as exc:
            self.post_message(self.RunsListed([], exc.render()))
            return
        except OSError as exc:
            self.post_message(self.RunsListed([], f"cannot read {root}: {exc.strerror or exc}"))
            return
        self.post_message(self.RunsListed(summaries))

    @on(RunsListed)
    def _runs_listed(self, message: RunsListed) -> None:
        services = self.app.services  # type: ignore[attr-defined]
        now = services.clock()
        table = self.query_one("#runs-table", DataTable)
        highlighted = self.highlighted_id
        self.summaries = {s.id: s for s in message.summaries}
        self.listed = True
        id_width = max([COLUMNS[0][2], *(min(48, len(s.id)) for s in message.summaries)])
        table.clear(columns=id_width != self._id_width)
        if not table.columns:
            self._add_columns(table, id_width)
        for summary in message.summaries:
            table.add_row(*row_cells(summary, now), key=summary.id)
        if highlighted in self.summaries:
            table.move_cursor(row=table.get_row_index(highlighted), animate=False)
        active = sum(1 for s in message.summaries if s.state in ACTIVE)
        if message.error:
            header = Text(message.error)
        elif message.summaries:
            header = Text(f"Runs in {root_label(services)}  ·  {len(message.summaries)} runs, {active} active")
        else:
            header = Text(f"No runs yet in {root_label(services)}. Press n to set one up.")
        self.query_one("#runs-root", TextPanel).show(header)
        self._show_detail()
        self.refresh_bindings()
        self.call_after_refresh(self.app.first_screen_ready)  # type: ignore[attr-defined]

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        self.query_one("#runs-detail", TextPanel).show(detail_text(self.highlighted, self.app.services.clock()))  # type: ignore[attr-defined]

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

    # --- actions --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        summary = self.highlighted
        if action in ("open_monitor", "chat_run"):
            return True if summary is not None and summary.error is None else None
        if action == "stop_run":
            return True if summary is not None and summary.state in ACTIVE else None
        if action == "resume_run":
            return True if summary is not None and summary.state in RESUMABLE else None
        return True

    def action_open_monitor(self) -> None:
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

    def action_stop_run(self) -> None:
        from .confirm import ConfirmDialog

        summary = self.highlighted
        if summary is None:
            return
        run_id = summary.id
        hard = summary.state == "stopping"
        detail = (
            "It is already stopping. SIGKILL ends it at once, without a final checkpoint."
            if hard
            else "The trainer saves a checkpoint at the next step and exits; resume continues from it."
        )

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop(run_id, hard)

        self.app.push_screen(ConfirmDialog(f"{'Kill' if hard else 'Stop'} {run_id}?", detail, yes="Stop"), answer)

    @work(thread=True, group="runs-action", exit_on_error=False, description="stop a run")
    def _stop(self, run_id: str, now: bool) -> None:
        from ...core import runs

        try:
            runs.stop(runs.Run(self.app.services.runs_root / run_id), now=now)  # type: ignore[attr-defined]
        except (UserError, OSError) as exc:
            self.post_message(Notice("Stop", exc.render() if isinstance(exc, UserError) else str(exc), "error"))
            return
        self.post_message(Notice("Stop", f"Stopping {run_id}: it saves a checkpoint at the next step."))

    def action_resume_run(self) -> None:
        if self.highlighted_id:
            self._resume(self.highlighted_id)

    @work(thread=True, group="runs-action", exit_on_error=False, description="resume a run")
    def _resume(self, run_id: str) -> None:
        from ...core import runs

        try:
            ckpt = runs.resume(runs.Run(self.app.services.runs_root / run_id))  # type: ignore[attr-defined]
        except (UserError, OSError) as exc:
            self.post_message(Notice("Resume", exc.render() if isinstance(exc, UserError) else str(exc), "error"))
            return
        self.post_message(Notice("Resume", f"Resuming {run_id} from {ckpt.path.name}."))

    @on(Notice)
    def _after_action(self) -> None:
        self.refresh_runs()

