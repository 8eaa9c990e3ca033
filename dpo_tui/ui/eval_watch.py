"""The runs screen's evaluation line: follows detached evaluations (``core.eval.jobs``) and says when to look.

An evaluation runs in its own process and keeps its state in ``RUNS_ROOT/.eval/ID/``.
:class:`EvalPanel` follows those launched from this console (:meth:`EvalPanel.follow`) and those
still active when it mounted (a console restarted during an evaluation). A thread worker reads them
(``read_eval_job``, cheap) and posts :class:`EvalPanel.EvalsRead`; the handler shows one line per job
(``eval 20251126-2130…: generating 120/432 · ETA 1m``) and, when one ends, a :class:`Notice` that
``R`` shows the results. The panel is hidden while it has nothing to show, and does not even import
the job module while the runs root has no ``.eval`` folder.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.widgets import Static

from ..core import numfmt
from .format import duration
from .messages import Notice, Snapshot

POLL_S = 0.5
JOBS_DIR = ".eval"
ACTIVE = ("starting", "running")
SHOWN = 3


def job_line(job: Any, id_width: int = 15) -> str:
    """``eval 20251126-2130…: generating 120/432 · ETA 1m`` while it runs; ``done · R shows…`` after."""
    head = f"eval {numfmt.ellipsize(str(job.id), id_width)}"
    runs = list(getattr(job, "run_ids", []) or [])
    who = f" ({runs[0]}{f' +{len(runs) - 1}' if len(runs) > 1 else ''})" if runs else ""
    state = str(job.state)
    if state in ACTIVE:
        stage = job.stage or state
        count = f" {job.done}/{job.total}" if job.total else ""
        eta = f" · ETA {duration(job.eta_s)}" if job.eta_s is not None else ""
        return f"{head}: {stage}{count}{eta}{who}"
    if state == "done":
        return f"{head}: done{who} · R shows the results"
    why = f": {job.error}" if job.error else f" (see {Path(job.path) / 'worker.log'})"
    return f"{head}: {state}{who}{why}"


class EvalPanel(Static):
    """One line per evaluation of this console session (the newest few)."""

    DEFAULT_CSS = """
    EvalPanel {
        height: auto;
        max-height: 3;
        padding: 0 1;
        color: $text-muted;
    }
    """

    @dataclass
    class EvalsRead(Snapshot):
        """Every followed job as read now. Posted by the ``eval-watch`` thread worker on each tick while one is active."""

        jobs: list[Any]

    def __init__(self, runs_root: Path | None = None, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.runs_root = runs_root
        self.jobs: dict[Path, Any] = {}
        """The last read of each followed job (``EvalJobView``), by folder (on the UI thread)."""
        self._followed: set[Path] = set()
        self._lock = threading.Lock()
        self._announced: set[Path] = set()

    def on_mount(self) -> None:
        self.display = False
        if self.runs_root is not None and (self.runs_root / JOBS_DIR).is_dir():
            self._read(scan=True)
        self.set_interval(POLL_S, self._tick, name="eval-watch")

    def follow(self, job_dir: Path) -> None:
        """Follow ``job_dir`` (just started) from now on."""
        with self._lock:
            self._followed.add(Path(job_dir))
        self._read()

    @property
    def active(self) -> bool:
        return any(str(job.state) in ACTIVE for job in self.jobs.values()) or len(self.jobs) < len(self._followed)

    def _tick(self) -> None:
        if self.active:
            self._read()

    @work(thread=True, exclusive=True, group="eval-watch", exit_on_error=False, description="read the evaluations' progress")
    def _read(self, scan: bool = False) -> None:
        from ..core.eval.jobs import eval_job_dirs, read_eval_job

        with self._lock:
            if scan and self.runs_root is not None:
                for job_dir in eval_job_dirs(self.runs_root):
                    if str(read_eval_job(job_dir).state) in ACTIVE:
                        self._followed.add(job_dir)
            jobs = [read_eval_job(job_dir) for job_dir in sorted(self._followed)]
        if jobs:
            self.post_message(self.EvalsRead(jobs))

    @on(EvalsRead)
    def _evals_read(self, message: EvalsRead) -> None:
        message.stop()
        for job in message.jobs:
            path = Path(job.path)
            before = self.jobs.get(path)
            self.jobs[path] = job
            ended = str(job.state) not in ACTIVE
            if ended and path not in self._announced and (before is None or str(before.state) in ACTIVE):
                self._announced.add(path)
                self.post_message(self._notice(job))
        self.display = bool(self.jobs)
        lines = Text()
        for job in sorted(self.jobs.values(), key=lambda j: Path(j.path).name)[-SHOWN:]:
            if lines:
                lines.append("\n")
            state = str(job.state)
            lines.append(job_line(job), style="bold" if state in ACTIVE else ("" if state == "done" else "bold red"))
        lines.no_wrap, lines.overflow = True, "ellipsis"
        self.update(lines)

    @staticmethod
    def _notice(job: Any) -> Notice:
        runs = ", ".join(job.run_ids or [])
        if str(job.state) == "done":
            return Notice(f"Evaluated {runs}", "R on the run shows the results (several selected: the trade-off chart)")
        return Notice(f"Evaluation of {runs} {job.state}", job.error or f"see {Path(job.path) / 'worker.log'}", "error")


def follow_eval(app: Any, job_dir: Path) -> None:
    """Show the runs screen following ``job_dir`` (started from any screen)."""
    app.open_runs()
    for panel in app.screen.query(EvalPanel):
        panel.follow(job_dir)
