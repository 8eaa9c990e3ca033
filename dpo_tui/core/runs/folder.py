"""The run folder: one :class:`Run` handle per folder, its files, its truthful status and its checkpoints.

A run is a folder; the folder is the truth::

    runs/20261126-213000-tiny-chat-b0.1/
      config.json     frozen RunConfig, written once before launch
      status.json     state, pids, host, heartbeat, step/max_steps, exit code (replaced atomically)
      events.jsonl    append-only event log (see core/events.py)
      trainer.log     the trainer's stdout+stderr
      checkpoints/    checkpoint-N/ (complete only with trainer_state.json and readable weights)
      adapter/        the final LoRA adapter (model/ for full fine-tuning)
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import events as ev
from ..config import RunConfig
from ..errors import UserError, first_line
from ..fsutil import JSON_ERRORS, atomic_write_json, read_json
from ..run_states import ACTIVE_STATES
from ..safetensors_header import SafetensorsError, read_header
from .status import STALL_AFTER_S, RunStatus, host_name, process_alive, processes_naming, read_run_json

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
LOG_FILE = "trainer.log"
SUPERVISOR_LOG = "supervisor.log"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
LOCKS_DIR = ".locks"
CHECKPOINT_MANIFEST = "dpo-tui-manifest.json"


@dataclass
class Checkpoint:
    path: Path
    step: int
    complete: bool
    reason: str = ""


class Run:
    """A handle on one run folder. Cheap to create; reads lazily."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # --- identity and files ------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def events_path(self) -> Path:
        return self.path / ev.EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    def config(self) -> RunConfig:
        try:
            data = read_run_json(self.config_path, self.id)
        except FileNotFoundError:
            raise UserError(f"Run {self.id} has no {CONFIG_FILE}", hint="the folder is incomplete; delete it") from None
        if not isinstance(data, dict):
            raise UserError(f"Run {self.id}: {CONFIG_FILE} is unreadable: a JSON {type(data).__name__}, not an object")
        try:
            return RunConfig.model_validate(data, context={"frozen": True})
        except ValidationError as exc:
            raise UserError(f"Run {self.id}: {CONFIG_FILE} is unreadable: {validation_reason(exc)}") from None
        except (TypeError, *JSON_ERRORS) as exc:
            raise UserError(f"Run {self.id}: {CONFIG_FILE} is unreadable: {first_line(exc)}") from None

    def raw_status(self) -> RunStatus:
        """status.json as written (no liveness check).

        A missing file reads as a fresh queued status, or, when the event log exists, as the status
        rebuilt from it: the trainer's heartbeat rewrites status.json from this, so a file deleted
        mid-run must come back as ``running`` with its pids, never as a pid-less ``queued``.
        """
        try:
            data = read_run_json(self.status_path, self.id)
        except FileNotFoundError:
            status = RunStatus(state="queued", created_at=self._ctime())
            return self._status_from_events(status)
        if not isinstance(data, dict):
            raise UserError(f"Run {self.id}: {STATUS_FILE} is unreadable: a JSON {type(data).__name__}, not an object")
        try:
            return RunStatus.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"Run {self.id}: {STATUS_FILE} is unreadable: {validation_reason(exc)}") from None

    def status_file_sound(self) -> bool:
        """status.json exists and parses: the run's own processes rewrite it whole when it does not
        (deleted, torn, garbled), so readers never stay on a damaged file."""
        try:
            self.raw_status()
        except (UserError, OSError):
            return False
        return self.status_path.exists()

    def writer_status(self) -> RunStatus:
        """For the run's own processes (trainer, supervisor): status.json, or when it is unreadable (torn,
        garbled), the status rebuilt from the event log as for a deleted file. A damaged file must not
        stop a healthy run; their next write replaces it whole."""
        try:
            return self.raw_status()
        except UserError:
            return self._status_from_events(RunStatus(state="queued", created_at=self._ctime()))

    def _ctime(self) -> float:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return 0.0
        return mtime if 0 <= mtime <= time.time() + 86400 * 365 * 100 else 0.0

    def write_status(self, status: RunStatus) -> None:
        status.updated_at = time.time()
        atomic_write_json(self.status_path, status.model_dump(mode="json"))

    def update_status(self, *, rebuild_unreadable: bool = False, **fields: Any) -> RunStatus:
        """Change some fields. ``rebuild_unreadable`` (the run's own processes only): an unreadable file is
        replaced by the status rebuilt from the event log instead of raising."""
        status = self.writer_status() if rebuild_unreadable else self.raw_status()
        for key, value in fields.items():
            setattr(status, key, value)
        self.write_status(status)
        return status

    # --- liveness ---------------------------------------------------------------------------
    def processes_alive(self, status: RunStatus | None = None) -> bool:
        status = status or self.raw_status()
        return process_alive(status.supervisor_pid, status.supervisor_start) or process_alive(status.pid, status.pid_start)

    def status(self, reconcile: bool = True) -> RunStatus:
        """The truthful status: an active state whose processes are gone becomes ``crashed`` (persisted).

        A run whose status.json vanished mid-run is rebuilt from its event log and live pids.
        """
        status = self.raw_status()
        if status.state in ACTIVE_STATES and (not status.host or status.host == host_name()):
            if status.supervisor_pid is None and status.pid is None:
                # Created but never launched (launcher died before spawning): nothing will run it.
                # An age in the future (a skewed clock, a copied folder) counts as old: nothing will run it either.
                if status.state != "queued" or abs(time.time() - (status.created_at or 0)) > 60:
                    status = self._mark_crashed(status, "the run was never started (launcher died before spawning it)", reconcile)
            elif not self.processes_alive(status):
                status = self._mark_crashed(status, self._crash_reason(status), reconcile)
        return status

    def _status_from_events(self, status: RunStatus) -> RunStatus:
        history = ev.RunHistory()
        history.apply(ev.read_events(self.events_path))
        status.step = history.step
        status.max_steps = history.max_steps
        status.attempt = history.attempt
        if history.terminal is not None:
            kind = history.terminal["type"]
            status.state = "finished" if kind == ev.FINISHED else "stopped" if kind == ev.STOPPED else "failed"
            _set_valid(status, kind=history.terminal.get("kind"), hint=history.terminal.get("hint"))
        elif history.started is not None:
            status.state = "running"
            _set_valid(status, **started_pids(history.started), host=history.started.get("host") or "")
        return status

    def _crash_reason(self, status: RunStatus) -> str:
        ckpt = self.newest_complete_checkpoint()
        where = f"; `dpo-tui resume {self.id}` continues from {ckpt.path.name}" if ckpt else ""
        return (
            "the trainer and its supervisor are gone without a final event (process group killed, "
            f"host OOM killer or reboot){where}"
        )

    def _mark_crashed(self, status: RunStatus, message: str, persist: bool) -> RunStatus:
        # The processes may have written their own outcome between our read and the liveness check (a
        # supervisor that fails at once writes `failed`, then exits): read again, so that outcome is kept
        # and never overwritten with `crashed`.
        with contextlib.suppress(UserError, OSError):
            fresh = self.raw_status()
            if fresh.state not in ACTIVE_STATES:
                return fresh
        status.state = "crashed"
        status.kind = "crash"
        status.message = message
        status.ended_at = status.ended_at or time.time()
        if persist:
            with contextlib.suppress(OSError):
                self.write_status(status)
        return status

    def might_be_alive(self) -> list[int]:
        """Pids that may be working on this run when its status cannot say: the status's pids while it
        reads as active; when status.json is unreadable, the newest ``started`` event's pids with their
        start times; and always any process whose command line names the folder. Empty means removing
        the folder harms no process."""
        candidates: list[tuple[int | None, float | None]] = []
        try:
            status = self.raw_status()
            if status.state in ACTIVE_STATES:
                candidates += [(status.supervisor_pid, status.supervisor_start), (status.pid, status.pid_start)]
        except (UserError, OSError):
            started = self.last_started_event()
            if started is not None:
                found = started_pids(started)
                candidates += [(found.get("supervisor_pid"), found.get("supervisor_start")), (found.get("pid"), found.get("pid_start"))]
        pids = [pid for pid, start in candidates if pid and process_alive(pid, start)]
        return list(dict.fromkeys(pids + processes_naming(self.path)))

    def is_stalled(self, status: RunStatus | None = None) -> bool:
        status = status or self.status()
        return (
            status.state in {"running", "starting", "stopping"}
            and status.heartbeat is not None
            and time.time() - status.heartbeat > STALL_AFTER_S
        )

    # --- checkpoints ------------------------------------------------------------------------
    def checkpoints(self) -> list[Checkpoint]:
        """All checkpoint folders, oldest first, each with whether it is safe to resume from."""
        found: list[Checkpoint] = []
        try:
            children = list(self.checkpoints_dir.iterdir()) if self.checkpoints_dir.is_dir() else []
        except OSError:
            return found  # another user's folder, or not a folder: no checkpoint to offer
        for child in children:
            m = re.fullmatch(r"checkpoint-(\d{1,15})", child.name)
            if m and child.is_dir() and not child.is_symlink():
                try:
                    ok, reason = checkpoint_complete(child)
                except OSError as exc:
                    ok, reason = False, ev.describe_os_error(child, exc)
                found.append(Checkpoint(child, int(m.group(1)), ok, reason))
        return sorted(found, key=lambda c: c.step)

    def last_started_event(self) -> dict[str, Any] | None:
        """The newest ``started`` event (device, world size, pids), found by a byte search, not a full fold."""
        try:
            with ev.open_regular(self.events_path) as fh:
                candidates = [line for line in fh if b'"started"' in line and len(line) <= ev.MAX_LINE_BYTES]
        except OSError:
            return None
        events = ev.EventReader(self.events_path).parse_lines(reversed(candidates))
        return next((e for e in events if e.get("type") == ev.STARTED), None)

    def newest_complete_checkpoint(self) -> Checkpoint | None:
        complete = [c for c in self.checkpoints() if c.complete]
        return complete[-1] if complete else None

    def final_weights_dir(self) -> Path | None:
        """The final adapter (or full model) when it was saved completely."""
        for candidate in (self.adapter_dir, self.model_dir):
            if (candidate / "COMPLETE").exists():
                return candidate
        return None


def validation_reason(exc: ValidationError) -> str:
    """``pid: Input should be greater than 0``: the first bad field and why, not pydantic's banner."""
    errors = exc.errors()
    if not errors:
        return first_line(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def started_pids(started: dict[str, Any]) -> dict[str, Any]:
    """The pids and start times a ``started`` event names, each kept only when it is a valid value."""
    probe = RunStatus()
    out: dict[str, Any] = {}
    for key in ("pid", "pid_start", "supervisor_pid", "supervisor_start"):
        try:
            setattr(probe, key, started.get(key))
        except ValidationError:
            continue
        out[key] = getattr(probe, key)
    return out


def _set_valid(status: RunStatus, **fields: Any) -> None:
    """Set each field that validates; a bad value from the event log leaves the field as it was."""
    for key, value in fields.items():
        with contextlib.suppress(ValidationError):
            setattr(status, key, value)


def checkpoint_complete(folder: Path) -> tuple[bool, str]:
    """Complete = trainer_state.json, optimizer and scheduler state, readable weights, no incomplete marker,
    and every file at the size the trainer's manifest recorded when it saved (when there is one).

    The Trainer writes trainer_state.json last, so a save killed midway lacks it.
    """
    if (folder / "checkpoint-is-incomplete.txt").exists():
        return False, "marked incomplete"
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        if not (folder / name).exists():
            return False, f"no {name}"
    manifest_ok, reason = _manifest_matches(folder)
    if not manifest_ok:
        return False, reason
    weights = list(folder.glob("*.safetensors"))
    if not weights:
        return False, "no weights"
    for w in weights:
        try:
            read_header(w)
        except SafetensorsError as exc:
            return False, f"{w.name}: {exc}"
    try:
        read_json(folder / "trainer_state.json")
    except (OSError, *JSON_ERRORS):
        return False, "trainer_state.json unreadable"
    return True, ""



def _manifest_matches(folder: Path) -> tuple[bool, str]:
    """Every file the trainer's manifest lists is there with the size it had when saved. A checkpoint
    from before manifests has none and passes (the other checks still apply)."""
    path = folder / CHECKPOINT_MANIFEST
    if not path.exists():
        return True, ""
    try:
        data = read_json(path)
    except (OSError, *JSON_ERRORS):
        return False, f"{CHECKPOINT_MANIFEST} unreadable"
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return False, f"{CHECKPOINT_MANIFEST} unreadable"
    for name, size in files.items():
        if not isinstance(size, int) or isinstance(size, bool) or ".." in Path(name).parts or Path(name).is_absolute():
            return False, f"{CHECKPOINT_MANIFEST} unreadable"
        try:
            actual = (folder / name).stat().st_size
        except FileNotFoundError:
            return False, f"no {name}"
        if actual != size:
            return False, f"{name} is {actual} bytes, {size} when saved"
    return True, ""
