"""Export a run from the console (modal): formats, checkpoint, output folder, the plan's preflight, launch.

Every change re-plans in a thread worker with the very checks ``dpo-tui export`` makes
(``core.export_plan.plan_export``) plus the disk-space estimate (``core.export_jobs.preflight``),
so a refusal (an existing destination, an unsupported GGUF architecture, no hub token, a disk too
small) shows here before any work. Launching writes the job folder and starts the worker detached
(``core.export_jobs.start_export``); the dialog dismisses with the job folder, or None when cancelled.

Outputs go under one folder: ``merged/``, ``model.gguf`` (inside ``ollama/`` when Ollama is chosen,
which needs the GGUF beside its Modelfile) and ``ollama/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Select, Static

from ...core.errors import UserError
from ..messages import Latest
from ..widgets.checkbox import FieldCheckbox
from ..widgets.inputs import FieldInput

FORMATS = (("merged", "merged"), ("gguf", "GGUF"), ("ollama", "Ollama"), ("hub", "hub"))
GGUF_TYPES = ("f16", "bf16", "q8_0")
FINAL = -1
HINT = "ctrl+s exports (in the background) · esc cancels"


@dataclass
class ExportRequest:
    """What the dialog's fields say, as ``plan_export`` arguments."""

    run_path: Path
    formats: frozenset[str]
    checkpoint: int | None
    folder: str
    gguf_type: str = "f16"
    repo: str = ""
    force: bool = False

    def arguments(self) -> dict[str, Any]:
        base = Path(self.folder).expanduser() if self.folder else None
        args: dict[str, Any] = {"checkpoint": self.checkpoint, "force": self.force, "gguf_type": self.gguf_type}
        if base is not None:
            if "merged" in self.formats:
                args["merged"] = base / "merged"
            if "ollama" in self.formats:
                args["ollama"] = base / "ollama"
            if "gguf" in self.formats:
                args["gguf"] = base / ("ollama" if "ollama" in self.formats else "") / "model.gguf"
        if "hub" in self.formats:
            args["push_to_hub"] = self.repo
        return args


def check_request(request: ExportRequest, free_bytes: Any = None) -> tuple[Any, list[str]]:
    """(the plan, the preflight lines); raises UserError with what the dialog should show (blocking I/O)."""
    from ...core.export_jobs import preflight
    from ...core.export_plan import plan_export
    from ...core.runs import Run

    if not request.formats:
        raise UserError("Choose at least one format")
    if request.formats - {"hub"} and not request.folder:
        raise UserError("Give an output folder")
    if "hub" in request.formats and not request.repo:
        raise UserError("Give the hub repo id (name or org/name)")
    plan = plan_export(Run(request.run_path), **request.arguments())
    return plan, preflight(plan, free_bytes)


class ExportDialog(ModalScreen[Path | None]):
    BINDINGS = [
        Binding("ctrl+s", "launch", "Export", id="export.launch", priority=True, tooltip="Start the export (detached)"),
        Binding("escape", "cancel", "Cancel", id="export.cancel", tooltip="Close without exporting"),
    ]

    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    #export-box { width: 78; max-width: 100%; height: auto; max-height: 100%; border: thick $primary;
                  background: $surface; padding: 0 1; }
    #export-title { text-style: bold; }
    #export-formats, #export-options { height: auto; }
    #export-formats Checkbox, #export-options Checkbox { margin-right: 2; }
    #export-options Select { width: 1fr; margin-right: 1; }
    #export-plan { height: auto; max-height: 8; color: $text-muted; }
    #export-plan.refused { color: $error; text-style: bold; }
    #export-hint { color: $text-muted; }
    """

    @dataclass
    class Checked(Message):
        """The request as the fields say it, planned and preflighted (``error``: the refusal to show).

        Posted by the ``export-check`` thread worker after every change; ``ticket`` is the check's, from
        ``_checks``. The first check also carries the run's complete checkpoints.
        """

        ticket: int
        plan: Any
        lines: list[str]
        error: str | None
        checkpoints: list[int] | None

    @dataclass
    class Launched(Message):
        """The export's job folder, or why it could not start. Posted once by the ``export-launch`` worker."""

        job_dir: Path | None
        error: str = ""

    def __init__(self, run_path: Path, run_id: str, free_bytes: Any = None) -> None:
        super().__init__()
        self.run_path = Path(run_path)
        self.run_id = run_id
        self.free_bytes = free_bytes
        self.plan: Any = None
        self.error: str | None = "checking…"
        self.launching = False
        self._launch_when_checked = False
        self._answered = 0
        self._checks = Latest()

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label(Text(f"Export {self.run_id}", no_wrap=True, overflow="ellipsis"), id="export-title")
            with Horizontal(id="export-formats"):
                for key, label in FORMATS:
                    yield FieldCheckbox(label, value=key == "merged", id=f"export-{key}", compact=True)
                yield FieldCheckbox("replace existing", id="export-force", compact=True)
            with Horizontal(id="export-options"):
                yield Select([("final weights", FINAL)], value=FINAL, allow_blank=False, id="export-checkpoint", compact=True)
                yield Select([(f"GGUF {t}", t) for t in GGUF_TYPES], value="f16", allow_blank=False, id="export-gguf-type",
                             compact=True)
            yield FieldInput(str(self.run_path / "export"), id="export-folder", compact=True,
                             placeholder="output folder (merged/, model.gguf, ollama/ go inside)")
            yield FieldInput("", id="export-repo", compact=True, placeholder="hub repo: name or org/name")
            yield Static("checking…", id="export-plan")
            yield Label(HINT, id="export-hint")

    def on_mount(self) -> None:
        self.query_one("#export-repo", Input).display = False
        self.query_one("#export-folder", Input).focus()
        self._recheck(first=True)

    # --- the request, as the fields say it ------------------------------------------------------
    def request(self) -> ExportRequest:
        formats = frozenset(key for key, _ in FORMATS if self.query_one(f"#export-{key}", Checkbox).value)
        checkpoint = self.query_one("#export-checkpoint", Select).value
        return ExportRequest(
            run_path=self.run_path,
            formats=formats,
            checkpoint=None if checkpoint in (FINAL, Select.BLANK) else int(str(checkpoint)),
            folder=self.query_one("#export-folder", Input).value.strip(),
            gguf_type=str(self.query_one("#export-gguf-type", Select).value),
            repo=self.query_one("#export-repo", Input).value.strip(),
            force=self.query_one("#export-force", Checkbox).value,
        )

    @on(Checkbox.Changed)
    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self) -> None:
        if self.is_mounted:
            self.query_one("#export-repo", Input).display = self.query_one("#export-hub", Checkbox).value
            self._recheck()

    def _recheck(self, first: bool = False) -> None:
        self.plan = None
        self.error = "checking…"
        self._check(self.request(), self._checks.issue(), first)

    @work(thread=True, exclusive=True, group="export-check", exit_on_error=False, description="check the export")
    def _check(self, request: ExportRequest, ticket: int, first: bool) -> None:
        checkpoints = None
        if first:
            from ...core.runs import Run

            checkpoints = [c.step for c in Run(request.run_path).checkpoints() if c.complete]
        try:
            plan, lines = check_request(request, self.free_bytes)
        except UserError as exc:
            self.post_message(self.Checked(ticket, None, [], exc.render(), checkpoints))
            return
        except OSError as exc:
            self.post_message(self.Checked(ticket, None, [], f"Cannot check the export: {exc.strerror or exc}", checkpoints))
            return
        self.post_message(self.Checked(ticket, plan, lines, None, checkpoints))

    def on_export_dialog_checked(self, message: Checked) -> None:
        if message.checkpoints:
            select = self.query_one("#export-checkpoint", Select)
            with self.prevent(Select.Changed):
                select.set_options([("final weights", FINAL), *((f"checkpoint-{s}", s) for s in message.checkpoints)])
                select.value = FINAL
        if not self._checks.is_latest(message.ticket):
            return
        self._answered = message.ticket
        panel = self.query_one("#export-plan", Static)
        self.error = message.error
        self.plan = message.plan
        if message.error:
            self.plan = None
            panel.set_class(True, "refused")
            panel.update(Text(f"✗ {message.error}"))
        else:
            panel.set_class(False, "refused")
            panel.update(Text("\n".join(message.lines)))
        if self._launch_when_checked:  # ctrl+s came while checking: go on with the answer
            self._launch_when_checked = False
            self.action_launch()

    @property
    def checked(self) -> bool:
        """Whether the preflight on screen answers the fields as they are now."""
        return self._answered != 0 and self._checks.is_latest(self._answered)

    # --- actions --------------------------------------------------------------------------------
    def action_launch(self) -> None:
        if self.launching:
            return
        if not self.checked:
            self._launch_when_checked = True
            return
        if self.plan is None or self.error:
            self.notify(self.error or "checking…", title="Export", severity="warning", markup=False)
            return
        self.launching = True
        self.query_one("#export-hint", Label).update("starting the export…")
        self._launch(self.plan)

    @work(thread=True, exclusive=True, group="export-launch", exit_on_error=False, description="start the export")
    def _launch(self, plan: Any) -> None:
        from ...core.export_jobs import start_export

        try:
            self.post_message(self.Launched(start_export(plan)))
        except UserError as exc:
            self.post_message(self.Launched(None, exc.render()))

    def on_export_dialog_launched(self, message: Launched) -> None:
        if message.job_dir is not None:
            self.dismiss(message.job_dir)
            return
        self.launching = False
        self.query_one("#export-hint", Label).update(HINT)
        self.notify(message.error, title="Export", severity="error", markup=False)

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_export(screen: Any, run_id: str) -> None:
    """Open the dialog for ``run_id``; a launched export is followed on the runs screen."""
    from ..export_watch import follow_export

    def launched(job_dir: Path | None) -> None:
        if job_dir is not None:
            follow_export(screen.app, job_dir)

    screen.app.push_screen(ExportDialog(screen.services.runs_root / run_id, run_id), launched)
