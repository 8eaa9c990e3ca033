"""The Pairs mode: pair folders (generate jobs) with live progress, and the keys that make a dataset.

Each folder under ``$DPO_TUI_HOME/pairs`` (``core.pairs.plan.pairs_job_dirs``) is one row: state,
prompts done/total with the ETA while it runs, candidates, and how many prompts are labelled by hand.
A thread worker reads them (``read_pairs_job``: the status file and counts, cheap) on the runs
refresh timer while this screen is shown, and after every action.

Keys: ``n`` the generate form (``pairs_form.GenerateDialog``), ``s`` stop and ``r`` resume the
highlighted job, ``l`` label by hand (the A/B queue, ``pairs_queue.py``), ``b`` label by rule (or
``hand``: the queue's decisions) — ``dpo-tui pairs label DIR --json`` in a subprocess, since a judge
may need the ML stack this process never imports — and ``t`` train on ``DIR/pairs.jsonl`` (the setup's
experiment form with that dataset and the folder's model).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from ...core.errors import UserError, first_line
from ...core.fsutil import JSON_ERRORS
from ..format import duration
from ..messages import Latest, Notice, Snapshot
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen, RowTable
from .pairs_form import GenerateDialog, RuleDialog, default_request, label_command, pairs_root, summary_lines

ACTIVE = ("starting", "running")
COLUMNS = (("name", "folder", 28), ("state", "state", 9), ("prompts", "prompts", 9), ("eta", "ETA", 7),
           ("cands", "cands", 6), ("labelled", "by hand", 8))


@dataclass
class FolderRow:
    """One pair folder as listed."""

    path: Path
    state: str
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    error: str | None = None
    candidates: int | None = None
    labelled: int = 0
    has_pairs: bool = False
    model: str = ""

    def cells(self) -> list[Any]:
        style = {"running": "bold", "starting": "bold", "done": "", "stopped": "yellow"}.get(self.state, "bold red")
        eta = duration(self.eta_s) if self.eta_s is not None and self.state in ACTIVE else ""
        return [self.path.name, Text(self.state, style=style), f"{self.done}/{self.total}", eta,
                "" if self.candidates is None else str(self.candidates), str(self.labelled) if self.labelled else ""]


def read_folder(path: Path) -> FolderRow:
    """A folder's row: the job's view plus the hand decisions (a, b or tie) in ``labels.jsonl``."""
    from ...core.pairs.plan import read_pairs_job
    from ...core.pairs.queue import read_hand_labels

    view = read_pairs_job(path)
    labelled = sum(1 for d in read_hand_labels(path).values() if d.decision != "skip")
    model = ""
    try:
        plan = json.loads((path / "plan.json").read_text(encoding="utf-8"))
        model = str(plan.get("model") or "") if isinstance(plan, dict) else ""
    except (OSError, *JSON_ERRORS):
        pass
    count = getattr(view, "candidates", None)
    return FolderRow(path, str(view.state), int(view.done or 0), int(view.total or 0), view.eta_s, view.error,
                     count if isinstance(count, int) else None, labelled, (path / "pairs.jsonl").is_file(), model)


def list_folders(root: Path) -> list[FolderRow]:
    from ...core.pairs.plan import pairs_job_dirs

    rows = []
    for path in pairs_job_dirs(root):
        try:
            rows.append(read_folder(path))
        except (UserError, OSError) as exc:
            rows.append(FolderRow(path, "unreadable", error=first_line(exc)))
    return rows


class PairsScreen(ConsoleScreen):
    """Base screen of the ``pairs`` mode."""

    MAIN_WIDGET = "#pairs-table"
    BINDINGS = [
        Binding("n", "new", "New", id="pairs.new", tooltip="Generate candidates for a prompts file (a detached job)"),
        Binding("l", "label_hand", "Label by hand", id="pairs.label-hand", tooltip="The A/B queue: a, b, tie, skip, undo, edit"),
        Binding("b", "label_rule", "Label by rule", id="pairs.label-rule",
                tooltip="Write pairs.jsonl by a rule (shorter, longer, must:…) or from the hand labels"),
        Binding("t", "train", "Train", id="pairs.train", tooltip="Set up a run on this folder's pairs.jsonl"),
        Binding("s", "stop", "Stop", id="pairs.stop", tooltip="Stop the generate job (what is done stays)"),
        Binding("r", "resume", "Resume", id="pairs.resume", tooltip="Resume the generate job (done prompts are kept)"),
        Binding("ctrl+l", "refresh", "Refresh", id="pairs.refresh", show=False, tooltip="Read the pair folders again now"),
    ]

    @dataclass
    class FoldersListed(Snapshot):
        """Every pair folder as read now (``error``: why the root could not be listed)."""

        rows: list[FolderRow]
        error: str | None = None
        ticket: int = 0

    @dataclass
    class Labelled(Snapshot):
        """A ``pairs label`` run ended: its summary, or the error to show."""

        folder: Path
        summary: dict[str, Any] | None
        error: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[Path, FolderRow] = {}
        self.order: list[Path] = []
        self.listed = False
        self.error: str | None = None
        self._listings = Latest()
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = pairs_root()
        return self._root

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="pairs-head")
        table = RowTable(id="pairs-table", cursor_type="row", zebra_stripes=True)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield TextPanel(id="pairs-detail")
        yield ConsoleFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#pairs-head", TextPanel).show(Text("Pair folders · reading…", style="dim"))
        self.query_one("#pairs-table", DataTable).focus()
        self.refresh_folders()
        interval = self.services.runs_refresh_interval
        if interval > 0:
            self.set_interval(interval, self._tick, name="pairs-refresh")

    def _tick(self) -> None:
        if self.is_current:
            self.refresh_folders()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.call_after_refresh(self.refresh_folders)

    def refresh_folders(self) -> None:
        self._list(self.root, self._listings.issue())

    @work(thread=True, exclusive=True, group="pairs-list", exit_on_error=False, description="list the pair folders")
    def _list(self, root: Path, ticket: int) -> None:
        try:
            self.post_message(self.FoldersListed(list_folders(root), ticket=ticket))
        except OSError as exc:
            self.post_message(self.FoldersListed([], f"cannot read {root}: {exc.strerror or exc}", ticket=ticket))

    @on(FoldersListed)
    def _listed(self, message: FoldersListed) -> None:
        if not self._listings.accept(message.ticket):
            return
        self.listed, self.error = True, message.error
        self.rows = {row.path: row for row in message.rows}
        order = [row.path for row in message.rows]
        table = self.query_one("#pairs-table", DataTable)
        highlighted = self.highlighted_path
        with self.app.batch_update():
            if order == self.order and table.row_count == len(order):
                for row in message.rows:
                    for (key, _, _), value in zip(COLUMNS, row.cells(), strict=True):
                        table.update_cell(str(row.path), key, value)
            else:
                table.clear()
                for row in message.rows:
                    table.add_row(*row.cells(), key=str(row.path))
                if highlighted in order:
                    table.move_cursor(row=order.index(highlighted), animate=False)
            self.order = order
            self._show_head()
            self._show_detail()
        self.refresh_bindings()
        self.call_after_refresh(self.console.first_screen_ready)

    def _show_head(self) -> None:
        active = sum(1 for r in self.rows.values() if r.state in ACTIVE)
        if self.error:
            head = Text(self.error)
        elif self.rows:
            head = Text(f"{len(self.rows)} pair folder{'' if len(self.rows) == 1 else 's'}, {active} generating · "
                        "n new · l label by hand · b by rule · t train")
        else:  # the table is empty: room for the whole sentence, however long the root's path
            head = Text(f"No pair folders yet in {self.root}.\nPress n to generate candidates for a prompts file.")
        head.no_wrap, head.overflow = True, "ellipsis"
        panel = self.query_one("#pairs-head", TextPanel)
        panel.set_class(not self.rows and not self.error, "-empty")
        panel.show(head)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        row = self.highlighted
        if row is None:
            text = Text("")
        elif row.error:
            text = Text(f"{row.state}: {row.error}", style="bold red")
        else:
            parts = [f"model {row.model}" if row.model else "", "pairs.jsonl written (t trains on it)" if row.has_pairs
                     else "no pairs.jsonl yet: l labels by hand, b by rule"]
            text = Text(" · ".join(p for p in parts if p), style="dim")
        self.query_one("#pairs-detail", TextPanel).show(text)

    @property
    def highlighted_path(self) -> Path | None:
        tables = self.query("#pairs-table").results(DataTable)
        table = next(tables, None)  # None before compose (a key that opens the form as the mode first shows)
        if table is None or not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty or shrinking table
            return None
        return Path(str(key.value)) if key.value is not None else None

    @property
    def highlighted(self) -> FolderRow | None:
        path = self.highlighted_path
        return self.rows.get(path) if path is not None else None

    # --- actions ----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        row = self.highlighted
        if action == "stop":
            return True if row is not None and row.state in ACTIVE else None
        if action == "resume":
            return True if row is not None and row.state in ("stopped", "failed", "crashed") else None
        if action in ("label_hand", "label_rule"):
            return True if row is not None and row.state != "unreadable" else None
        if action == "train":
            return True if row is not None and row.has_pairs else None
        return True

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        row = self.highlighted
        if row is None:
            return "No pair folder yet: n generates one."
        if action == "train":
            return "No pairs.jsonl in this folder yet: label it first (l by hand, b by rule)."
        if action == "stop":
            return f"The job is {row.state}, not generating."
        if action == "resume":
            return f"The job is {row.state}: only a stopped, failed or crashed job resumes."
        return None

    def action_refresh(self) -> None:
        self.refresh_folders()

    def action_new(self) -> None:
        self.open_form()

    def open_form(self, adapter: str | None = None, model: str | None = None) -> None:
        """The generate form; with ``adapter`` (a run id) it samples from that run's tuned model."""
        setup_model = model or self.console.setup.model
        request = default_request(setup_model, adapter, self.services.clock(), self.root)

        def started(job_dir: Path | None) -> None:
            if job_dir is not None:
                self.notify(f"Generating into {job_dir}", title="Pairs", markup=False)
                self.refresh_folders()

        self.app.push_screen(GenerateDialog(request, self.services.runs_root), started)

    def action_label_hand(self) -> None:
        from .pairs_queue import open_queue

        row = self.highlighted
        if row is not None:
            open_queue(self, row.path)

    def action_label_rule(self) -> None:
        row = self.highlighted
        if row is None:
            return

        def answered(spec: str | None) -> None:
            if spec:
                self.notify(f"Labelling {row.path.name} by {spec}…", title="Pairs", markup=False)
                self._label(row.path, spec)

        self.app.push_screen(RuleDialog(row.path.name), answered)

    @work(thread=True, group="pairs-label", exit_on_error=False, description="label the pairs")
    def _label(self, folder: Path, spec: str) -> None:
        try:
            done = subprocess.run(label_command(folder, spec), capture_output=True, text=True, timeout=3600, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            self.post_message(self.Labelled(folder, None, f"Could not run the labelling: {exc}"))
            return
        summary: dict[str, Any] | None = None
        try:
            parsed = json.loads(done.stdout) if done.stdout.strip() else None
            summary = parsed if isinstance(parsed, dict) else None
        except ValueError:
            summary = None
        error = None if done.returncode == 0 else (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")
        self.post_message(self.Labelled(folder, summary, error))

    @on(Labelled)
    def _labelled(self, message: Labelled) -> None:
        lines = summary_lines(message.summary) if message.summary else []
        if message.error:
            self.notify("\n".join([*lines, message.error][-8:]), title=f"Label {message.folder.name}", severity="error", markup=False,
                        timeout=15)
        else:
            self.notify("\n".join(lines) or f"pairs.jsonl written in {message.folder}", title=f"Labelled {message.folder.name}",
                        markup=False, timeout=15)
        self.refresh_folders()

    def action_stop(self) -> None:
        row = self.highlighted
        if row is not None and row.state in ACTIVE:
            self._stop(row.path)

    @work(thread=True, group="pairs-stop", exit_on_error=False, description="stop the generate job")
    def _stop(self, folder: Path) -> None:
        from ...core.job_folder import stop_job

        try:
            state = stop_job(folder, wait_s=30.0)
        except UserError as exc:
            self.post_message(Notice("Stop", exc.render(), "error"))
            return
        self.post_message(Notice("Stop", f"{folder.name}: {state}"))

    def action_resume(self) -> None:
        row = self.highlighted
        if row is not None:
            self._resume(row.path)

    @work(thread=True, group="pairs-resume", exit_on_error=False, description="resume the generate job")
    def _resume(self, folder: Path) -> None:
        try:
            from ...core.pairs.plan import resume_pairs

            resume_pairs(folder)
        except UserError as exc:
            self.post_message(Notice("Resume", exc.render(), "error"))
            return
        except OSError as exc:
            self.post_message(Notice("Resume", f"Cannot resume {folder.name}: {exc.strerror or exc}", "error"))
            return
        self.post_message(Notice("Resume", f"{folder.name}: generating again"))

    @on(Notice)
    def _after_notice(self) -> None:
        self.refresh_folders()

    def action_train(self) -> None:
        row = self.highlighted
        if row is None or not row.has_pairs:
            return
        train_on(self.console, row.path / "pairs.jsonl", row.model or None)


def train_on(app: Any, dataset: Path, model: str | None) -> None:
    """The setup mode's experiment form with ``dataset`` (and ``model``, when known) chosen."""
    from .dataset import DatasetScreen
    from .experiment import ExperimentScreen

    setup = app.setup
    setup.dataset, setup.data_report = str(dataset), None
    if model:
        setup.model, setup.model_info = model, None
    app.switch_mode("setup")
    while len(app.screen_stack) > 1:
        app.pop_screen()
    app.push_screen(DatasetScreen())
    app.push_screen(ExperimentScreen())


def open_pairs_form(app: Any, run_id: str, model: str | None = None) -> None:
    """Round two from a run: the Pairs mode's generate form sampling from ``run_id``'s adapter."""
    app.switch_mode("pairs")
    base = app.screen_stack[0]
    if isinstance(base, PairsScreen):
        base.open_form(adapter=run_id, model=model)


def pairs_from_run(screen: Any, run_id: str) -> None:
    """``P`` on the runs or monitor screen: the generate form with the run's base model and tuned adapter."""
    from ...core.runs import Run

    model = None
    try:
        model = str(Run(screen.services.runs_root / run_id).config().model)
    except (UserError, OSError):
        pass  # the form still opens; the plan names the problem when started
    screen.console.open_pairs(run_id, model)
