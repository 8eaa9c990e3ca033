"""A run's ``status.json`` model and whether its processes still live.

Process liveness checks the start time as well as the pid, so a pid the kernel reused for an
unrelated process never reads as the run still going.
"""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict

from ..run_states import State

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

