"""A run's ``status.json`` model and whether its processes still live.

Process liveness checks the start time as well as the pid, so a pid the kernel reused for an
unrelated process never reads as the run still going.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..errors import UserError, first_line
from ..events import open_regular
from ..run_states import State

# Exit codes of the trainer process.
EXIT_FINISHED = 0
EXIT_STOPPED = 3
EXIT_FAILED = 4

# A live trainer rewrites its heartbeat every few seconds; this long without one means stalled.
STALL_AFTER_S = 180.0


# Bounds on what a run folder's files may hold. A file is read from disk, so any value is possible; one
# out of range (a pid psutil refuses, a time ``localtime`` overflows on, NaN that JSON cannot carry) makes
# the run read as damaged instead of breaking every command that lists the root.
MAX_PID = 2**31 - 1
MAX_TIME = 253402300799.0  # 9999-12-31: what ``time.localtime`` and ``datetime`` still format
MAX_STEP = 2**53  # exact in a float, so a step survives JSON in any reader
MAX_FILE_BYTES = 4 << 20  # status.json and config.json are a few KB; never read a huge file whole

Pid = Annotated[StrictInt, Field(gt=0, le=MAX_PID)]
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIME)]
Step = Annotated[int, Field(ge=0, le=MAX_STEP)]


class RunStatus(BaseModel):
    """``status.json``: the run's current state. Replaced atomically; readers never see half of it.

    Every field is range-checked (finite numbers, positive pids, times a clock can show), and so is every
    assignment, so a bad value from disk or from the event log fails validation where it is read.
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, validate_assignment=True)

    state: State = "queued"
    attempt: Step = 0
    host: str = ""
    supervisor_pid: Pid | None = None
    supervisor_start: Timestamp | None = None
    pid: Pid | None = None
    pid_start: Timestamp | None = None
    pgid: Pid | None = None
    heartbeat: Timestamp | None = None
    phase: str = ""
    step: Step = 0
    max_steps: Step | None = None
    exit_code: int | None = None
    kind: str | None = None
    message: str | None = None
    hint: str | None = None
    resume_from: str | None = None
    devices: list[str] = []
    created_at: Timestamp = 0.0
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    updated_at: Timestamp = 0.0


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(data: bytes | str) -> Any:
    """JSON as the standard defines it: no NaN/Infinity, no number that overflows to one, no nesting deep
    enough to exhaust the stack. Every failure is a ValueError."""
    try:
        return json.loads(data, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None


def read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a run folder's file, which must be a regular file of at most ``limit`` bytes
    (``events.open_regular`` says why). FileNotFoundError passes through; other problems are OSErrors."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise OSError(0, f"{size:,} bytes, more than the {limit:,} such a file can hold", str(path))
        return fh.read(limit + 1)


def read_run_json(path: Path, run_id: str) -> Any:
    """A run file's JSON, or a UserError naming the run, the file and the cause. FileNotFoundError passes."""
    try:
        data = read_regular(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = (exc.strerror or first_line(exc)).lower()
        raise UserError(f"Run {run_id}: {path.name} is unreadable: {reason}", hint="repair the file, or delete the run folder") from None
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"Run {run_id}: {path.name} is unreadable: larger than {MAX_FILE_BYTES:,} bytes")
    try:
        return loads_strict(data)
    except ValueError as exc:
        raise UserError(f"Run {run_id}: {path.name} is unreadable: {first_line(exc)}") from None


def host_name() -> str:
    return socket.gethostname()


def process_alive(pid: int | None, start_time: float | None = None) -> bool:
    """True when ``pid`` runs and (if given) started at ``start_time`` — guards against PID reuse."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start_time is None or abs(proc.create_time() - start_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, OverflowError):
        return False


def process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError, OverflowError):
        return None


def processes_naming(folder: Path) -> list[int]:
    """Pids of live processes whose command line names ``folder`` (the supervisor's and the trainer's
    argv carry their run folder): the last word on whether a run whose files are damaged is alive."""
    import psutil

    names = {str(folder), os.path.abspath(folder)}
    with_slash = tuple(n.rstrip("/") + "/" for n in names)
    try:
        names.add(str(folder.resolve()))
    except OSError:
        pass
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        info = proc.info
        if info.get("pid") == me or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        for arg in info.get("cmdline") or ():
            if arg in names or arg.startswith(with_slash):
                found.append(info["pid"])
                break
    return found

