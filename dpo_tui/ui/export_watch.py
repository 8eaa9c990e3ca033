"""The runs screen's export line: follows detached exports (``core.export_jobs``) and says where the files went.

An export runs in its own process and writes ``progress.jsonl`` and ``status.json`` into
``RUN/exports/JOB/``. :class:`ExportPanel` follows the jobs it knows of: those launched from this
console (:meth:`ExportPanel.watch`) and those still running when it mounted (a console restarted
during an export). A thread worker reads them (new progress lines by offset, the status file) and
posts :class:`ExportPanel.ExportsRead`; the handler renders one line per job and, when a job ends,
posts a :class:`Notice` with where its files are (or why it failed). The panel is hidden while it
has nothing to show, so screens without exports look exactly as before.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.widgets import Static

from .messages import Notice, Snapshot

if TYPE_CHECKING:
    from ..core.export_jobs import ExportJob, JobReader

POLL_S = 0.25


class ExportPanel(Static):
    """One line per export of this console session: stage and count while it runs, the outputs once done."""

    DEFAULT_CSS = """
    ExportPanel {
        height: auto;
        max-height: 4;
        padding: 0 1;
        color: $text-muted;
    }
    """

    @dataclass
    class ExportsRead(Snapshot):
        """Every followed job as read now (copies: the readers stay in the worker's hands).

        Posted by the panel's ``export-watch`` thread worker on each tick while a job is active.
        """

        jobs: list[ExportJob]

    def __init__(self, runs_root: Path | None = None, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.runs_root = runs_root
        self.jobs: dict[Path, ExportJob] = {}
        """The last read of each followed job, by folder (on the UI thread)."""
        self._readers: dict[Path, JobReader] = {}
        self._lock = threading.Lock()  # the readers are used by one worker thread at a time
        self._announced: set[Path] = set()

    def on_mount(self) -> None:
        self.display = False
        self._read(scan=True)
        self.set_interval(POLL_S, self._tick, name="export-watch")

    def follow(self, job_dir: Path) -> None:
        """Follow ``job_dir`` (just launched) from now on."""
        from ..core.export_jobs import JobReader

        with self._lock:
            self._readers.setdefault(Path(job_dir), JobReader(Path(job_dir)))
        self._read()

    @property
    def active(self) -> bool:
        return any(job.active for job in self.jobs.values()) or len(self.jobs) < len(self._readers)

    def _tick(self) -> None:
        if self.active:
            self._read()

    @work(thread=True, exclusive=True, group="export-watch", exit_on_error=False, description="read the exports' progress")
    def _read(self, scan: bool = False) -> None:
        from ..core.export_jobs import JobReader, active_job_dirs

        with self._lock:
            if scan and self.runs_root is not None:
                for job_dir in active_job_dirs(self.runs_root):
                    self._readers.setdefault(job_dir, JobReader(job_dir))
            jobs = [copy.deepcopy(reader.read()) for reader in self._readers.values()]
        if jobs:
            self.post_message(self.ExportsRead(jobs))

    @on(ExportsRead)
    def _exports_read(self, message: ExportsRead) -> None:
        message.stop()
        for job in message.jobs:
            before = self.jobs.get(job.path)
            self.jobs[job.path] = job
            if not job.active and job.path not in self._announced and (before is None or before.active):
                self._announced.add(job.path)
                self.post_message(self._notice(job))
        self.display = bool(self.jobs)
        lines = Text()
        for job in sorted(self.jobs.values(), key=lambda j: j.path.name)[-4:]:
            if lines:
                lines.append("\n")
            style = "bold" if job.active else ("" if job.state == "done" else "bold red")
            lines.append(f"{job.run_id}: " if job.run_id else "", style="dim")
            lines.append(job.line(), style=style)
        lines.no_wrap, lines.overflow = True, "ellipsis"
        self.update(lines)

    @staticmethod
    def _notice(job: ExportJob) -> Notice:
        from ..core.export_plan import outputs_summary

        if job.state == "done":
            return Notice(f"Exported {job.run_id}", "\n".join(outputs_summary(job.outputs)) or f"see {job.path}")
        return Notice(f"Export of {job.run_id} {job.state}", job.error or f"see {job.path / 'worker.log'}", "error")


def follow_export(app: Any, job_dir: Path) -> None:
    """Show the runs screen following ``job_dir`` (launched from any screen)."""
    app.open_runs()
    for panel in app.screen.query(ExportPanel):
        panel.follow(job_dir)
