"""Run folders: the contract between the UI, the CLI and the trainer (DESIGN.md §3).

A run is a folder; the folder is the truth::

    runs/20261126-213000-tiny-chat-b0.1/
      config.json     frozen RunConfig, written once before launch
      status.json     state, pids, host, heartbeat, step/max_steps, exit code (replaced atomically)
      events.jsonl    append-only event log (see events.py)
      trainer.log     the trainer's stdout+stderr
      checkpoints/    checkpoint-N/ (complete only with trainer_state.json and readable weights)
      adapter/        the final LoRA adapter (model/ for full fine-tuning)

This module creates, lists, reads and reconciles run folders, picks resume checkpoints, and
launches/stops the detached supervisor. It never imports the ML stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from . import events as ev
from .config import RunConfig
from .errors import UserError
from .fsutil import atomic_write_json, atomic_write_text, read_json
from .safetensors_header import SafetensorsError, read_header

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
LOG_FILE = "trainer.log"
SUPERVISOR_LOG = "supervisor.log"
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
LOCKS_DIR = ".locks"

State = Literal["queued", "starting", "running", "stopping", "stopped", "finished", "failed", "crashed"]
ACTIVE_STATES = frozenset({"queued", "starting", "running", "stopping"})
TERMINAL_STATES = frozenset({"stopped", "finished", "failed", "crashed"})
RESUMABLE_STATES = frozenset({"stopped", "failed", "crashed"})

# Exit codes of the trainer process.
EXIT_FINISHED = 0
EXIT_STOPPED = 3
EXIT_FAILED = 4

# A live trainer rewrites its heartbeat every few seconds; this long without one means stalled.
STALL_AFTER_S = 180.0


class RunStatus(BaseModel):
    """``status.json``: the run's current state. Replaced atomically; readers never see half of it."""

    model_config = ConfigDict(extra="allow")

    state: State = "queued"
    attempt: int = 0
    host: str = ""
    supervisor_pid: int | None = None
    supervisor_start: float | None = None
    pid: int | None = None
    pid_start: float | None = None
    pgid: int | None = None
    heartbeat: float | None = None
    phase: str = ""
    step: int = 0
    max_steps: int | None = None
    exit_code: int | None = None
    kind: str | None = None
    message: str | None = None
    hint: str | None = None
    resume_from: str | None = None
    devices: list[str] = []
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float = 0.0


def host_name() -> str:
    return socket.gethostname()


def process_alive(pid: int | None, start_time: float | None = None) -> bool:
    """True when ``pid`` runs and (if given) started at ``start_time`` — guards against PID reuse."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start_time is None or abs(proc.create_time() - start_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


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
            return RunConfig.model_validate(read_json(self.config_path), context={"frozen": True})
        except FileNotFoundError:
            raise UserError(f"Run {self.id} has no {CONFIG_FILE}", hint="the folder is incomplete; delete it") from None
        except (ValueError, ValidationError) as exc:
            raise UserError(f"Run {self.id}: {CONFIG_FILE} is unreadable: {str(exc).splitlines()[0]}") from None

    def raw_status(self) -> RunStatus:
        """status.json as written (no liveness check).

        A missing file reads as a fresh queued status, or, when the event log exists, as the status
        rebuilt from it: the trainer's heartbeat rewrites status.json from this, so a file deleted
        mid-run must come back as ``running`` with its pids, never as a pid-less ``queued``.
        """
        try:
            return RunStatus.model_validate(read_json(self.status_path))
        except FileNotFoundError:
            status = RunStatus(state="queued", created_at=self._ctime())
            if self.events_path.exists():
                status = self._status_from_events(status)
            return status
        except (ValueError, ValidationError) as exc:
            raise UserError(f"Run {self.id}: {STATUS_FILE} is unreadable: {str(exc).splitlines()[0]}") from None

    def _ctime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def write_status(self, status: RunStatus) -> None:
        status.updated_at = time.time()
        atomic_write_json(self.status_path, status.model_dump(mode="json"))

    def update_status(self, **fields: Any) -> RunStatus:
        status = self.raw_status()
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
                if status.state != "queued" or time.time() - (status.created_at or 0) > 60:
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
            status.kind = history.terminal.get("kind")
            status.hint = history.terminal.get("hint")
        elif history.started is not None:
            status.state = "running"
            status.pid = history.started.get("pid")
            status.pid_start = history.started.get("pid_start")
            status.supervisor_pid = history.started.get("supervisor_pid")
            status.supervisor_start = history.started.get("supervisor_start")
            status.host = history.started.get("host") or ""
        return status

    def _crash_reason(self, status: RunStatus) -> str:
        ckpt = self.newest_complete_checkpoint()
        where = f"; `dpo-tui resume {self.id}` continues from {ckpt.path.name}" if ckpt else ""
        return (
            "the trainer and its supervisor are gone without a final event (process group killed, "
            f"host OOM killer or reboot){where}"
        )

    def _mark_crashed(self, status: RunStatus, message: str, persist: bool) -> RunStatus:
        status.state = "crashed"
        status.kind = "crash"
        status.message = message
        status.ended_at = status.ended_at or time.time()
        if persist:
            with contextlib.suppress(OSError):
                self.write_status(status)
        return status

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
        found = []
        if not self.checkpoints_dir.is_dir():
            return found
        for child in self.checkpoints_dir.iterdir():
            m = re.fullmatch(r"checkpoint-(\d+)", child.name)
            if m and child.is_dir():
                ok, reason = checkpoint_complete(child)
                found.append(Checkpoint(child, int(m.group(1)), ok, reason))
        return sorted(found, key=lambda c: c.step)

    def last_started_event(self) -> dict[str, Any] | None:
        """The newest ``started`` event (device, world size, pids), found by a byte search, not a full fold."""
        try:
            with open(self.events_path, "rb") as fh:
                candidates = [line for line in fh if b'"started"' in line]
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


def checkpoint_complete(folder: Path) -> tuple[bool, str]:
    """Complete = trainer_state.json, optimizer and scheduler state, readable weights, no incomplete marker.

    The Trainer writes trainer_state.json last, so a save killed midway lacks it (docs: trl-dpo-facts §7).
    """
    if (folder / "checkpoint-is-incomplete.txt").exists():
        return False, "marked incomplete"
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        if not (folder / name).exists():
            return False, f"no {name}"
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
    except (OSError, ValueError):
        return False, "trainer_state.json unreadable"
    return True, ""


# --- the runs root -------------------------------------------------------------------------------
def slug(text: str, limit: int = 24) -> str:
    base = Path(text.rstrip("/")).name if "/" not in text or Path(text).exists() else text.split("/")[-1]
    out = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    return (out or "model")[:limit].strip("-")


def make_run_id(config: RunConfig, now: datetime | None = None) -> str:
    now = now or datetime.now()
    model = "tiny-chat" if config.is_sample() else slug(config.model)
    parts = [now.strftime("%Y%m%d-%H%M%S"), model, f"b{config.beta:g}"]
    if config.name:
        parts.append(config.name)
    return "-".join(parts)


def freeze_paths(config: RunConfig) -> RunConfig:
    """Local model/dataset paths made absolute: the supervisor and trainer run inside the run folder, and
    every later reader (runs, chat, export) in some other directory."""
    updates = {}
    for name in ("model", "dataset"):
        value = getattr(config, name)
        if value != "sample" and Path(value).expanduser().exists():
            updates[name] = str(Path(value).expanduser().resolve())
    return config.model_copy(update=updates) if updates else config


def create_run(root: Path, config: RunConfig, run_id: str | None = None) -> Run:
    """Make the run folder with its frozen config and a ``queued`` status. Never overwrites a run."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise UserError(f"Cannot create the runs root {root}: permission denied", hint="pass --runs-dir to a writable folder") from None
    except OSError as exc:
        raise UserError(f"Cannot create the runs root {root}: {exc.strerror}") from None
    config = freeze_paths(config)
    base = run_id or make_run_id(config)
    for n in range(1, 1000):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except PermissionError:
            raise UserError(f"Cannot write to the runs root {root}: permission denied", hint="pass --runs-dir to a writable folder") from None
        except OSError as exc:
            raise UserError(f"Cannot create a run folder in {root}: {exc.strerror}") from None
        run = Run(candidate)
        try:
            atomic_write_text(run.config_path, config.to_json())
            run.write_status(RunStatus(state="queued", created_at=time.time(), host=host_name()))
        except OSError as exc:
            shutil.rmtree(candidate, ignore_errors=True)
            raise UserError(f"Cannot write the run folder {candidate}: {exc.strerror}", hint="free disk space or choose another --runs-dir") from None
        return run
    raise UserError(f"Too many runs named {base} in {root}")


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (
        (path / CONFIG_FILE).exists() or (path / STATUS_FILE).exists() or (path / ev.EVENTS_FILE).exists()
    )


def made_by_dpo_tui(path: Path) -> bool:
    """Not just any folder with a config.json (a model folder has one): a status.json or event log beside a
    config.json that is a run config. A path given on the command line must pass this before anything is
    written to it or deleted."""
    if not ((path / STATUS_FILE).exists() or (path / ev.EVENTS_FILE).exists()):
        return False
    try:
        data = read_json(path / CONFIG_FILE)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return True  # a damaged run folder is still a run (listed as unreadable)
    return isinstance(data, dict) and "beta" in data and "model_type" not in data and "architectures" not in data


def find_run(root: Path, run_id: str) -> Run:
    """A run by id, unique id prefix, or path. Raises a UserError naming close matches."""
    if not run_id or "\x00" in run_id:
        raise UserError("No run id given")
    as_path = Path(run_id).expanduser()
    if as_path.is_absolute() or os.sep in run_id:
        if is_run_dir(as_path) and made_by_dpo_tui(as_path):
            return Run(as_path)
        raise UserError(f"No run folder at {as_path}", hint="a run folder holds the config.json and status.json that dpo-tui wrote")
    exact = root / run_id
    if is_run_dir(exact):
        return Run(exact)
    if root.is_dir():
        matches = sorted(p for p in root.iterdir() if p.name.startswith(run_id) and is_run_dir(p))
        if len(matches) == 1:
            return Run(matches[0])
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches[:5])
            raise UserError(f"Run id '{run_id}' is ambiguous: {names}", hint="give more of the id")
    raise UserError(f"No run '{run_id}' in {root}", hint="`dpo-tui runs` lists the runs; --runs-dir picks another root")


def list_run_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if is_run_dir(p)), key=lambda p: p.name, reverse=True)


@dataclass
class RunSummary:
    """One row of the runs list. ``error`` is set (and state ``unreadable``) for a broken folder."""

    id: str
    path: Path
    state: str
    step: int = 0
    max_steps: int | None = None
    beta: float | None = None
    loss_type: str | None = None
    lora_rank: int | None = None
    method: str | None = None
    model: str | None = None
    dataset: str | None = None
    group: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    loss: float | None = None
    margin: float | None = None
    accuracy: float | None = None
    kind: str | None = None
    hint: str | None = None
    message: str | None = None
    phase: str = ""
    stalled: bool = False
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["path"] = str(self.path)
        return data

    @property
    def duration(self) -> float | None:
        if not self.started_at:
            return None
        return (self.ended_at or time.time()) - self.started_at


def last_log_metrics(events_path: Path, tail_bytes: int = 65536) -> dict[str, Any]:
    """Metrics of the newest ``log`` event, reading only the file's tail (fast for 1,000 runs)."""
    import json

    try:
        with open(events_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            tail = fh.read()
    except OSError:
        return {}
    for raw in reversed(tail.split(b"\n")):
        if b'"type": "log"' not in raw and b'"type":"log"' not in raw:
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("metrics"), dict) and not event.get("summary"):
            return event["metrics"]
    return {}


def summarize(path: Path, reconcile: bool = True) -> RunSummary:
    """One runs-list row. ``reconcile=False`` reports a dead run as crashed without writing status.json
    (the console's promise: opening it changes nothing)."""
    run = Run(path)
    try:
        status = run.status(reconcile=reconcile)
        config = run.config()
    except UserError as exc:
        return RunSummary(id=path.name, path=path, state="unreadable", error=str(exc.summary))
    metrics = last_log_metrics(run.events_path)
    return RunSummary(
        id=run.id,
        path=path,
        state=status.state,
        step=status.step,
        max_steps=status.max_steps,
        beta=config.beta,
        loss_type=config.loss_type,
        lora_rank=config.lora_rank if config.method != "full" else None,
        method=config.method,
        model=config.model,
        dataset=config.dataset,
        group=config.group,
        created_at=status.created_at,
        started_at=status.started_at,
        ended_at=status.ended_at,
        loss=metrics.get("loss"),
        margin=metrics.get("rewards/margins"),
        accuracy=metrics.get("rewards/accuracies"),
        kind=status.kind,
        hint=status.hint,
        message=status.message,
        phase=status.phase,
        stalled=run.is_stalled(status),
    )


def list_runs(root: Path, reconcile: bool = True) -> list[RunSummary]:
    """Every run in the root, newest first. Broken folders are listed as ``unreadable``, never hidden."""
    return [summarize(p, reconcile) for p in list_run_dirs(root)]


def _fingerprint(path: Path) -> tuple[tuple[int, int], ...]:
    """What a run's row is made of, as (mtime_ns, size) per file: three ``stat`` calls, no reads."""
    marks = []
    for name in (STATUS_FILE, CONFIG_FILE, ev.EVENTS_FILE):
        try:
            st = os.stat(path / name)
            marks.append((st.st_mtime_ns, st.st_size))
        except OSError:
            marks.append((0, -1))
    return tuple(marks)


class RunLister:
    """``list_runs`` for a console that re-lists every few seconds: a run that has ended and whose
    files have not changed since the last listing keeps its row, so a root of 1,000 finished runs
    costs 3,000 ``stat`` calls per re-list instead of 2,000 JSON reads and validations (which held
    the GIL long enough to delay keys). Active runs are always read afresh: their liveness and
    stall state change without any file changing. Not thread-safe; one lister per caller.
    """

    def __init__(self) -> None:
        self._rows: dict[Path, tuple[tuple[tuple[int, int], ...], RunSummary]] = {}

    def list(self, root: Path, reconcile: bool = True) -> list[RunSummary]:
        rows: dict[Path, tuple[tuple[tuple[int, int], ...], RunSummary]] = {}
        for path in list_run_dirs(root):
            mark = _fingerprint(path)
            cached = self._rows.get(path)
            if cached is not None and cached[0] == mark and cached[1].state in TERMINAL_STATES:
                rows[path] = cached
            else:
                rows[path] = (mark, summarize(path, reconcile))
        self._rows = rows  # deleted runs drop out
        return [summary for _, summary in rows.values()]


# --- launching and stopping -----------------------------------------------------------------------
def launch(run: Run, resume_from: Path | None = None) -> int:
    """Start the run's supervisor detached (new session, stdin /dev/null, output to a file). Returns its pid.

    The supervisor survives the launching terminal hanging up, the UI exiting, and Ctrl-C in it.
    """
    cmd = [sys.executable, "-m", "dpo_tui.worker.supervise", str(run.path)]
    if resume_from is not None:
        cmd += ["--resume-from", str(resume_from)]
    env = dict(os.environ)
    # Make the package importable for the child even when run from a source checkout.
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(run.path / SUPERVISOR_LOG, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(run.path),
        )
    run.update_status(supervisor_pid=proc.pid, supervisor_start=process_start_time(proc.pid), host=host_name())
    return proc.pid


def prepare_resume(run: Run) -> Checkpoint:
    """Check a run can resume and return the checkpoint it will continue from."""
    status = run.status()
    if status.state == "finished":
        raise UserError(f"Run {run.id} already finished; nothing to resume", hint="start a new run, or `dpo-tui train --config` with more steps")
    if status.state in ACTIVE_STATES:
        raise UserError(f"Run {run.id} is {status.state}; stop it before resuming", hint=f"`dpo-tui attach {run.id}` follows it")
    # The previous attempt's supervisor records the outcome just after its trainer exits: let it finish,
    # so the two never write status.json at once.
    deadline = time.time() + 15
    while run.processes_alive(status) and time.time() < deadline:
        time.sleep(0.1)
    if run.processes_alive(status):
        raise UserError(f"Run {run.id} is still shutting down", hint="try again in a few seconds")
    check_resume_devices(run)
    ckpt = run.newest_complete_checkpoint()
    if ckpt is None:
        broken = [c.path.name + f" ({c.reason})" for c in run.checkpoints() if not c.complete]
        detail = f"; incomplete: {', '.join(broken)}" if broken else ""
        raise UserError(
            f"Run {run.id} has no complete checkpoint to resume from{detail}",
            hint="start it again as a new run with `dpo-tui train --config` using its config.json",
        )
    return ckpt


def check_resume_devices(run: Run) -> None:
    """A resumed run gets the same world size as before (its config is frozen), so the GPUs it
    trained on must be there: sharded optimizer states (ZeRO, FSDP) only load into as many ranks as
    saved them, and a DDP run on fewer GPUs would silently change the effective batch size. Refuse
    with the numbers instead of starting a trainer that fails or trains differently."""
    from .preflight import check_devices, visible_gpu_ids

    started = run.last_started_event()
    if not started or started.get("device") != "cuda":
        return  # trained on the CPU: gloo processes need no GPU
    config = run.config()
    ids = visible_gpu_ids()
    count = len(ids)
    world = int(started.get("world_size") or config.nproc)
    if count < world:
        where = f"GPU {','.join(map(str, config.gpus))}" if config.gpus else f"{world} GPU{'s' if world != 1 else ''}"
        raise UserError(
            f"Run {run.id} trained on {where} ({world} process{'es' if world != 1 else ''}, {config.strategy}), "
            f"but {count} GPU{'s are' if count != 1 else ' is'} visible now",
            hint="resume where those GPUs are visible (check CUDA_VISIBLE_DEVICES and `nvidia-smi`); the checkpoint "
            f"resumes with the same number of processes; to change it, start a new run from {CONFIG_FILE}",
        )
    check_devices(config, ids, what=f"Run {run.id}")


def resume(run: Run) -> Checkpoint:
    ckpt = prepare_resume(run)
    status = run.raw_status()
    status.state = "queued"
    status.resume_from = str(ckpt.path)
    status.kind = status.hint = status.message = None
    status.exit_code = None
    status.ended_at = None
    status.pid = status.pid_start = status.supervisor_pid = status.supervisor_start = None
    run.write_status(status)
    launch(run, resume_from=ckpt.path)
    return ckpt


def _signal_group(status: RunStatus, sig: int) -> bool:
    """Signal the run's process group (supervisor + trainer) once; fall back to the pids.

    The supervisor and the trainer share one group, and each process group gets the signal once:
    a second SIGTERM a moment after the first would only make the trainer's stop handler run twice.
    """
    signalled: set[int] = set()
    for pid, start in ((status.supervisor_pid, status.supervisor_start), (status.pid, status.pid_start)):
        if pid and process_alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                group = os.getpgid(pid)
                if group not in signalled:
                    os.killpg(group, sig)
                    signalled.add(group)
    return bool(signalled)


def stop(run: Run, now: bool = False, wait: float = 0.0, escalate_after: float | None = None) -> RunStatus:
    """Graceful stop: SIGTERM to the process group (checkpoint at the next step, then ``stopped``).

    ``now`` (or a second stop while ``stopping``) sends SIGKILL. ``wait`` seconds are spent
    waiting for a terminal state; ``escalate_after`` turns a slow graceful stop into SIGKILL.
    """
    status = run.status()
    if status.state in TERMINAL_STATES:
        raise UserError(f"Run {run.id} is not running (state: {status.state})")
    hard = now or status.state == "stopping"
    if hard:
        _kill(run, status)
        return run.status()
    run.update_status(state="stopping")
    if not _signal_group(status, signal.SIGTERM):
        return run.status()
    deadline = time.time() + wait
    while time.time() < deadline:
        current = run.status()
        if current.state in TERMINAL_STATES:
            return current
        if escalate_after is not None and time.time() - (deadline - wait) > escalate_after:
            _kill(run, current)
            return run.status()
        time.sleep(0.2)
    return run.status(reconcile=False)


def _kill(run: Run, status: RunStatus) -> None:
    _signal_group(status, signal.SIGKILL)
    for _ in range(50):
        if not run.processes_alive(status):
            break
        time.sleep(0.1)
    current = run.raw_status()
    if current.state not in TERMINAL_STATES:
        ckpt = run.newest_complete_checkpoint()
        hint = f"resume continues from {ckpt.path.name}" if ckpt else "no complete checkpoint yet"
        with ev.EventWriter(run.events_path, attempt=current.attempt or 1) as writer:
            writer.emit(ev.STOPPED, reason="killed", step=current.step, hint=hint)
        current.state = "stopped"
        current.kind = "killed"
        current.message = "stopped with SIGKILL (no final checkpoint)"
        current.hint = hint
        current.ended_at = time.time()
        run.write_status(current)


def delete(run: Run) -> None:
    try:
        status = run.status()
    except UserError:
        status = None  # an unreadable status.json: no recorded process to protect, the folder can go
    if status is not None and status.state in ACTIVE_STATES and run.processes_alive(status):
        raise UserError(f"Run {run.id} is {status.state}; stop it before deleting it")
    # Rename first so a reader never sees a half-deleted run, then remove.
    trash = run.path.with_name(f".deleting-{run.id}-{os.getpid()}")
    os.replace(run.path, trash)
    shutil.rmtree(trash, ignore_errors=True)
