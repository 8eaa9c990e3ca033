"""An export started from the console: a job folder inside the run, a detached worker, progress on disk.

The console never runs an export in its own process: it writes the plan (:mod:`.export_plan`) into a
job folder and starts ``python -m dpo_tui.worker.export --plan plan.json --job FOLDER`` in a new
session, so the export survives the console quitting, exactly as a run's supervisor does
(:func:`dpo_tui.core.runs.lifecycle.launch`). Anyone can follow it by reading the folder::

    RUN/exports/JOB_ID/
        plan.json        the validated ExportPlan (what, from where, to where)
        status.json      {"state": "starting|running|done|failed|interrupted", "pid", "pid_start",
                          "started_at", "ended_at", "exit_code", "outputs", "error"}
        progress.jsonl   the worker's events, one JSON object a line (the protocol in docs/export.md)
        worker.log       the worker's stdout/stderr (a traceback only for a bug)

Only the worker writes ``status.json`` once it runs (atomically); the launcher writes the first
``starting`` one. A ``starting``/``running`` job whose process is gone reads as ``crashed``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .disk_space import check_space
from .errors import UserError
from .export_plan import ExportPlan, worker_command
from .fsutil import make_unique_dir
from .job_folder import (
    ACTIVE_STATES as ACTIVE_JOB_STATES,
)
from .job_folder import (
    LOG_FILE,
    PLAN_FILE,
    PROGRESS_FILE,
    STATUS_FILE,
    ProgressTail,
    is_dead,
    launch_detached,
    read_status,
    write_status,
)

JOBS_DIR = "exports"
__all__ = ["LOG_FILE", "PLAN_FILE", "PROGRESS_FILE", "STATUS_FILE", "read_status", "write_status"]


# --- the folder -----------------------------------------------------------------------------------
def jobs_dir(run_path: Path) -> Path:
    return Path(run_path) / JOBS_DIR


def new_job_dir(run_path: Path, now: float | None = None) -> Path:
    """Create a fresh, uniquely named job folder (``20261126-213000``, then ``-2``…)."""
    base = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    root = jobs_dir(run_path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create {root}: {exc.strerror or exc}", hint="the run folder must be writable") from None
    try:
        made = make_unique_dir(root, base)
    except OSError as exc:
        raise UserError(f"Cannot create an export folder in {root}: {exc.strerror or exc}", hint="the run folder must be writable") from None
    if made is None:
        raise UserError(f"Too many exports named {base} in {root}")
    return made


# --- launching ------------------------------------------------------------------------------------
def start_export(plan: ExportPlan, now: float | None = None) -> Path:
    """Write the plan into a new job folder of its run and start the worker detached. Returns the folder."""
    job_dir = new_job_dir(Path(plan.run_path), now)
    try:
        (job_dir / PLAN_FILE).write_text(plan.to_json(), encoding="utf-8")
        write_status(job_dir, state="starting", run_id=plan.run_id, created_at=time.time(), destinations=plan.describe())
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise UserError(f"Cannot write the export job {job_dir}: {exc.strerror or exc}", hint="free disk space") from None
    cmd = [*worker_command(job_dir / PLAN_FILE), "--job", str(job_dir)]
    launch_detached(job_dir, cmd[2], cmd[3:], "export")
    return job_dir


# --- reading --------------------------------------------------------------------------------------
@dataclass
class ExportJob:
    """What the console shows about one export: its state, the current stage and count, the outputs."""

    path: Path
    run_id: str = ""
    state: str = "starting"
    stage: str = ""
    message: str = ""
    done: int = 0
    total: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    events: int = 0

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_JOB_STATES

    def line(self) -> str:
        """One line for the runs screen: ``export 2130…: gguf 12/38 blk.3.attn_q`` or where the files are."""
        head = f"export {self.id}"
        if self.state == "done":
            from .export_plan import outputs_summary

            where = "; ".join(outputs_summary(self.outputs)) or "done"
            return f"{head} done: {where}"
        if self.state in ("failed", "crashed", "interrupted"):
            return f"{head} {self.state}: {self.error or 'see ' + str(self.path / LOG_FILE)}"
        count = f" {self.done}/{self.total}" if self.total else ""
        what = f" · {self.message}" if self.message else ""
        return f"{head} {self.stage or self.state}{count}{what}"


class JobReader:
    """Follows one job folder: new progress lines by byte offset, and the status file (cheap to call often)."""

    def __init__(self, job_dir: Path, alive: Any = None) -> None:
        self.job = ExportJob(Path(job_dir))
        self._tail = ProgressTail(job_dir)
        self._alive = alive  # (pid, start) -> bool; injected by tests, else core.runs.status.process_alive

    def read(self) -> ExportJob:
        job = self.job
        self._read_progress()
        status = read_status(job.path) or {}
        job.run_id = str(status.get("run_id") or job.run_id)
        state = str(status.get("state") or "starting")
        if state in ACTIVE_JOB_STATES and is_dead(status, self._alive):
            self._read_progress()  # the last events a dying worker wrote
            status = read_status(job.path) or status
            state = str(status.get("state") or state)
            if state in ACTIVE_JOB_STATES:
                state = "crashed"
                job.error = job.error or f"the export worker ended without a result (see {job.path / LOG_FILE})"
        job.state = state
        if isinstance(status.get("outputs"), dict):
            job.outputs = status["outputs"]
        if status.get("error") and not job.error:
            job.error = str(status["error"])
        return job

    def _read_progress(self) -> None:
        for event in self._tail.new_events():
            self._fold(event)

    def _fold(self, event: dict[str, Any]) -> None:
        job = self.job
        job.events += 1
        kind = event.get("type")
        if kind == "stage":
            job.stage, job.message, job.done, job.total = str(event.get("stage", "")), str(event.get("message", "")), 0, 0
        elif kind == "progress":
            job.stage = str(event.get("stage", job.stage))
            job.done, job.total = int(event.get("done") or 0), int(event.get("total") or 0)
            job.message = str(event.get("message", ""))
        elif kind == "warning":
            job.warnings.append(str(event.get("message", "")))
        elif kind == "done" and isinstance(event.get("outputs"), dict):
            job.outputs = event["outputs"]
        elif kind == "error":
            job.error = str(event.get("summary") or event.get("text") or "export failed")


def job_dirs(run_path: Path) -> list[Path]:
    """The run's export job folders, oldest first."""
    root = jobs_dir(run_path)
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and (p / STATUS_FILE).exists())
    except OSError:
        return []


def active_job_dirs(runs_root: Path) -> list[Path]:
    """Job folders under ``runs_root`` whose status says they are still starting or running."""
    found = []
    for status in sorted(Path(runs_root).glob(f"*/{JOBS_DIR}/*/{STATUS_FILE}")):
        data = read_status(status.parent) or {}
        if data.get("state") in ACTIVE_JOB_STATES:
            found.append(status.parent)
    return found


# --- preflight: how much will be written, and is there room ----------------------------------------
def weights_folder(plan: ExportPlan) -> Path | None:
    """The folder whose safetensors hold the weights the export merges into (the base, or a full model)."""
    if plan.is_full:
        return Path(plan.source)
    base = Path(plan.base_model)
    if base.is_dir():
        return base
    from .hub import cached_snapshot

    return cached_snapshot(plan.base_model, "model", plan.base_revision)


def estimate_bytes(plan: ExportPlan) -> list[tuple[str, Path, int]]:
    """(what, where, bytes) for each local output, from the weights' safetensors headers (no weight is read).

    Empty when the weights are not on disk yet (a hub model not downloaded): the worker checks again
    once it has loaded the model.
    """
    from .safetensors_header import SafetensorsError, read_header

    folder = weights_folder(plan)
    files = sorted(folder.glob("*.safetensors")) if folder is not None and folder.is_dir() else []
    data_bytes = numel = 0
    for path in files:
        try:
            header = read_header(path)
        except SafetensorsError:
            return []
        data_bytes += header.data_bytes
        numel += header.parameter_count
    if not files:
        return []
    needs: list[tuple[str, Path, int]] = []
    if plan.merged:
        needs.append(("merged folder", Path(plan.merged), data_bytes))
    if plan.gguf:
        per = {"f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32}.get(plan.gguf_type, 2.0)
        needs.append(("GGUF file", Path(plan.gguf), int(numel * per)))
    return needs


def preflight(plan: ExportPlan, free_bytes: Any = None) -> list[str]:
    """The lines the export dialog shows before launching; raises :class:`UserError` when the disk is too small.

    ``free_bytes(path)`` is injectable for tests; by default ``shutil.disk_usage(path).free``.
    """
    lines = plan.describe()
    needs = estimate_bytes(plan)
    if not needs and (plan.merged or plan.gguf):
        lines.append("size: unknown until the model is loaded (checked again then)")
    lines += check_space(needs, free_bytes)
    return lines
