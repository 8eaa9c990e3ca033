"""A detached job in a folder: exports, evaluations and pair generation share this shape.

The console and the CLI never do heavy work in their own process: they write a plan into a job folder
and start a worker in a new session (``setsid``), so the job survives the console quitting or the SSH
session dropping, exactly as a run's supervisor does. Anyone can follow it by reading the folder::

    JOB/
        plan.json        what to do (each job kind has its own plan model)
        status.json      {"state": "starting|running|done|failed|stopped|interrupted", "pid", "pid_start",
                          "created_at", "started_at", "ended_at", "error", ...}
        progress.jsonl   the worker's events, one JSON object a line
        worker.log       the worker's stdout/stderr (a traceback only for a bug)
        lock             flock'd by the worker for its whole life: a second start or resume is refused

Only the worker writes ``status.json`` once it runs (atomically); the launcher writes the first
``starting`` one. A ``starting``/``running`` job whose process is gone reads as ``crashed``
(:func:`effective_state`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsutil import JSON_ERRORS, atomic_write_json

PLAN_FILE = "plan.json"
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "worker.log"
LOCK_FILE = "lock"
EXIT_GRACE_S = 15.0
"""How long a start waits for the worker of a job whose status says it ended (it is still exiting)."""
ACTIVE_STATES = ("starting", "running")
START_GRACE_S = 120.0
"""How long a job may stay ``starting`` (the worker imports torch first) before it reads as crashed."""


def write_status(job_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into the job's status.json (atomically: a reader sees the old or the new one)."""
    current = read_status(job_dir) or {}
    current.update(fields)
    atomic_write_json(Path(job_dir) / STATUS_FILE, current)


def read_status(job_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(job_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, *JSON_ERRORS):
        return None
    return data if isinstance(data, dict) else None


def mark_running(job_dir: Path, **fields: Any) -> None:
    """The worker's first status write: its pid (with start time, against pid reuse) and ``running``."""
    from .runs.status import process_start_time

    write_status(job_dir, state="running", pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                 started_at=time.time(), **fields)


def package_env() -> dict[str, str]:
    """The environment for a worker: this package importable (from a source checkout too)."""
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def claim_job(job_dir: Path, what: str, wait_s: float = 0.0) -> int:
    """Take the job's ``lock`` (flock, without waiting) for a worker about to start; its fd, for
    :func:`launch_detached`, which hands it to the worker.

    A status check alone is not enough: two resumes that read ``failed`` at the same moment would both
    start a worker. The flock follows the open file, so the worker that inherits the fd holds it until it
    exits, whoever launched it. A UserError when another worker (or a launch under way) holds it after
    ``wait_s``: a worker records its end state a moment before it exits, so a caller that read a finished
    state waits that moment out instead of refusing.
    """
    from .locks import open_lock

    path = Path(job_dir) / LOCK_FILE
    fd = open_lock(path)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
        os.close(fd)
        raise UserError(f"The {what} job {Path(job_dir).name} is already running (a worker holds {path})",
                        hint="follow it, or stop it before starting it again") from None


@contextlib.contextmanager
def claimed(job_dir: Path, what: str) -> Iterator[int]:
    """Claim a job for a new worker (:func:`claim_job`) and yield the lock's fd for :func:`launch_detached`.

    A job whose status says it ended waits out its worker's last moment; one that still looks active is
    refused at once. If the body raises, the fd is closed (the claim is dropped) and the error goes on.
    """
    ended = effective_state(read_status(job_dir) or {"state": "new"}) not in ACTIVE_STATES
    fd = claim_job(job_dir, what, wait_s=EXIT_GRACE_S if ended else 0.0)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        raise


def lock_held(job_dir: Path) -> bool:
    """Whether a worker (or a launch under way) holds the job's lock right now; never waits, never creates it."""
    path = Path(job_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def launch_detached(job_dir: Path, module: str, args: list[str], what: str, lock_fd: int | None = None) -> int:
    """Start ``python -m MODULE ARGS`` in its own session with its output in ``worker.log``; returns the pid.

    ``what`` names the job in errors ("the evaluation worker did not start: ..."). ``lock_fd`` (from
    :func:`claim_job`) is passed on to the worker, which then holds the job's lock for its life, and
    closed here either way.
    """
    cmd = [sys.executable, "-m", module, *args]
    try:
        with open(Path(job_dir) / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True, env=package_env(), cwd=str(job_dir),
                                    pass_fds=() if lock_fd is None else (lock_fd,))
    except OSError as exc:
        write_status(job_dir, state="failed", ended_at=time.time(), error=f"the {what} worker did not start: {exc}")
        raise UserError(f"Could not start the {what} worker: {exc.strerror or exc}") from None
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    # Reap it when it ends while this process lives (no <defunct> child); if this process quits first,
    # the worker (its own session) keeps going and init reaps it.
    threading.Thread(target=proc.wait, name=f"{what}-reaper-{proc.pid}", daemon=True).start()
    return proc.pid


AliveCheck = Callable[[Any, Any], bool]


def is_dead(status: dict[str, Any], alive: AliveCheck | None = None, now: float | None = None) -> bool:
    """Whether an active-looking job's worker is gone (or never got going within :data:`START_GRACE_S`)."""
    pid = status.get("pid")
    if status.get("state") == "starting" or not pid:
        created = status.get("created_at")
        return isinstance(created, (int, float)) and (time.time() if now is None else now) - created > START_GRACE_S
    if alive is None:
        from .runs.status import process_alive

        return not process_alive(pid, status.get("pid_start"))
    return not alive(pid, status.get("pid_start"))


def effective_state(status: dict[str, Any] | None, alive: AliveCheck | None = None) -> str:
    """The state to show: ``crashed`` for an active-looking job whose worker is gone."""
    if not status:
        return "unreadable"
    state = str(status.get("state") or "starting")
    if state in ACTIVE_STATES and is_dead(status, alive):
        return "crashed"
    return state


def stop_job(job_dir: Path, wait_s: float = 30.0, alive: AliveCheck | None = None) -> str:
    """Ask a job's worker to stop (SIGTERM to its session) and wait for it to end; returns the final state.

    The worker stops at its next safe point and records ``stopped``; whatever it finished stays on disk,
    so the job can be resumed. A worker that does not end within ``wait_s`` is left running and the state
    it reports is returned.
    """
    status = read_status(job_dir)
    if not status:
        raise UserError(f"{job_dir} is not a job folder (no readable status.json)")
    if effective_state(status, alive) not in ACTIVE_STATES:
        return effective_state(status, alive)
    pid = status.get("pid")
    if not isinstance(status.get("pid_start"), (int, float)):
        # Without the worker's start time a reused pid cannot be told apart: never signal a stranger.
        raise UserError(f"{job_dir}/status.json names no process start time, so the worker cannot be told apart from "
                        "another process that got its pid", hint="stop the worker by hand (see its pid in status.json)")
    if isinstance(pid, int) and pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = read_status(job_dir) or status
        state = effective_state(status, alive)
        if state not in ACTIVE_STATES:
            return state
        time.sleep(0.1)
    return effective_state(read_status(job_dir), alive)


class ProgressTail:
    """New complete JSON lines of ``progress.jsonl`` since the last call, by byte offset (cheap to poll)."""

    def __init__(self, job_dir: Path) -> None:
        self.path = Path(job_dir) / PROGRESS_FILE
        self._offset = 0
        self._partial = b""

    def new_events(self) -> Iterator[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # a line still being written
        for raw in lines:
            with contextlib.suppress(*JSON_ERRORS):
                event = json.loads(raw)
                if isinstance(event, dict):
                    yield event


class ProgressWriter:
    """The worker's side: one JSON object a line, flushed, each with a timestamp ``t``."""

    def __init__(self, job_dir: Path) -> None:
        self._fh = open(Path(job_dir) / PROGRESS_FILE, "a", encoding="utf-8")  # noqa: SIM115 - held for the job's life

    def emit(self, obj: dict[str, Any]) -> None:
        obj = {"t": round(time.time(), 3), **obj}
        self._fh.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()


def eta_seconds(done: int, total: int, started_at: float | None, done_at_start: int = 0,
                now: float | None = None) -> float | None:
    """Seconds left at the pace since this attempt started (work done by an earlier attempt excluded)."""
    if started_at is None or total <= 0 or done >= total:
        return None
    made = done - done_at_start
    elapsed = (time.time() if now is None else now) - started_at
    if made <= 0 or elapsed <= 0:
        return None
    return (total - done) * elapsed / made
