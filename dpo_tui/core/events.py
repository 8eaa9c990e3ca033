"""The event log wire format, defined once for the trainer (writer) and the UI/CLI (readers).

``events.jsonl`` is append-only, one JSON object per line, fsync'd per event::

    {"v":1,"seq":17,"t":1764192000.12,"attempt":1,"type":"log","step":40,"epoch":0.8,
     "metrics":{"loss":0.52,"rewards/margins":0.91},"nonfinite":[]}

Rules (``docs/run-directory.md``, "Events"): a reader keeps a byte offset and reads whole lines only (a last line
without ``\\n`` is a torn write: wait for it); unknown types and fields are ignored; NaN/Inf
are written as ``null`` and listed in ``nonfinite``. A resumed attempt writes a ``resumed``
event; readers drop earlier ``log`` events with a step above the resume step, so a metric
series never repeats or skips a step.

The writer and every reader of the format stay in this one module, hence its length.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import first_line
from .fsutil import JSON_ERRORS

_loads: Callable[[bytes | str], Any]
try:  # 3-5x faster parsing of long event logs (reattach to a 100,000-event run); optional.
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the stdlib parser is the fallback
    _loads = json.loads

EVENT_VERSION = 1
EVENTS_FILE = "events.jsonl"
MAX_LINE_BYTES = 1 << 20
"""No event is this long (samples are capped far below it); a longer line is garbage and is skipped unread."""

# Event types. Exactly one terminal event ends an attempt.
STARTED = "started"
LOG = "log"
EVAL = "eval"
CHECKPOINT = "checkpoint"
SAMPLE = "sample"
RESOURCE = "resource"
WARNING = "warning"
RESUMED = "resumed"
FINISHED = "finished"
STOPPED = "stopped"
FAILED = "failed"
TERMINAL_TYPES = frozenset({FINISHED, STOPPED, FAILED})

# Failure kinds carried by a ``failed`` event.
FAILURE_KINDS = ("oom", "nan", "data", "config", "disk", "crash", "killed")

# The metrics the console charts, by TRL's names.
CHART_METRICS = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "rewards/chosen",
    "rewards/rejected",
)


def open_regular(path: Path | str) -> Any:
    """``open(path, "rb")`` for a file in a run folder, refusing anything but a regular file.

    Opened non-blocking and checked before any read: a FIFO would block ``open`` until a writer came,
    and a device never ends. A folder or special file raises an OSError whose text says what it is.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "is a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(0, "is not a regular file (a FIFO, socket or device)", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def describe_os_error(path: Path | str, exc: OSError) -> str:
    """``events.jsonl: permission denied``: the file and the cause, for a status line or a row."""
    return f"{Path(path).name}: {(exc.strerror or first_line(exc)).lower()}"


# Control characters, line separators, and the lone surrogates a name with non-UTF-8 bytes decodes to.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` safe to print to a terminal: control characters (an ESC that would start an escape
    sequence, a newline that would break a table row) shown as ``\\x1b``-style escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def finite_number(value: Any) -> float | int | None:
    """``value`` when it is a real, finite number (not a bool, a string or 1e999), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def event_int(value: Any, default: int = 0, limit: int = 2**53) -> int:
    """An event's integer field (step, attempt, max_steps) when it is one in ``0..limit``, else ``default``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        return default
    return value


# Event times a clock can show (up to 9999-12-31); anything else is treated as absent.
MAX_EVENT_TIME = 253402300799.0


def event_time(value: Any) -> float | None:
    number = finite_number(value)
    return float(number) if number is not None and 0 <= number <= MAX_EVENT_TIME else None


def sanitize_metrics(metrics: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Replace non-finite floats with ``None`` and list their keys (strict JSON has no NaN)."""
    clean: dict[str, Any] = {}
    nonfinite: list[str] = []
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            clean[key] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            clean[key] = int(number) if isinstance(value, int) else number
        else:
            clean[key] = None
            nonfinite.append(key)
    return clean, nonfinite


class EventWriter:
    """Appends events durably. One writer per run (rank 0 of the current attempt)."""

    def __init__(self, path: Path | str, attempt: int = 1) -> None:
        self.path = Path(path)
        self.attempt = attempt
        try:
            self._seq = last_seq(self.path)
            # A previous attempt killed mid-write leaves a torn line: start ours on a fresh line.
            needs_newline = False
            if self.path.exists() and self.path.stat().st_size > 0:
                with open_regular(self.path) as fh:
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
            # Readable too: if the file is deleted under us, its history is still reachable through this handle.
            self._fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - lives as long as the writer
        except OSError as exc:
            # Name the file and the likely cause: the bare "Operation not permitted" of an immutable
            # (``chattr +i``) log tells the operator nothing. Still an OSError, so callers' handling holds.
            raise OSError(exc.errno or 0, f"cannot append to the run's event log ({(exc.strerror or first_line(exc)).lower()}; "
                          "it must be a writable regular file: `lsattr` shows an immutable 'i' flag)", str(self.path)) from None
        if needs_newline:
            self._fh.write("\n")
            self._fh.flush()

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        event: dict[str, Any] = {"v": EVENT_VERSION, "seq": self._seq, "t": time.time(), "attempt": self.attempt, "type": type_}
        if "metrics" in fields and isinstance(fields["metrics"], dict):
            metrics, nonfinite = sanitize_metrics(fields.pop("metrics"))
            fields["metrics"] = metrics
            fields["nonfinite"] = nonfinite
        event.update(fields)
        line = json.dumps(event, allow_nan=False, default=str)
        self._follow_path()
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return event

    def _follow_path(self) -> None:
        """Reopen the log if it was deleted or replaced since it was opened, carrying its history over.

        Without this a deleted ``events.jsonl`` swallows every later event (the terminal one too) in an
        unlinked inode, and readers see a run that never got past step 0. Two stats per event: cheap.
        """
        mine = os.fstat(self._fh.fileno())
        try:
            current: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            current = None
        except OSError:
            return  # unreadable folder: keep the open handle, the next event tries again
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino) and mine.st_nlink > 0:
            return
        try:
            history = _read_all(self._fh.fileno(), mine.st_size)
            if history and not history.endswith(b"\n"):
                history += b"\n"
            if current is None:
                _restore(self.path, history)
            elif stat.S_ISREG(current.st_mode) and current.st_size == 0:
                with open(self.path, "ab") as fh:  # replaced by an empty file: it gets the history too
                    fh.write(history)
                    fh.flush()
                    os.fsync(fh.fileno())
            fh_new = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - replaces the writer's handle
        except OSError:
            return  # cannot be restored (a folder in its place, a full disk): keep writing where we can
        self._fh.close()
        self._fh = fh_new

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _restore(path: Path, content: bytes) -> None:
    """Put ``content`` back at ``path`` whole (a reader never sees half of it) unless someone created it meanwhile."""
    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # created meanwhile: append to that one
    finally:
        tmp.unlink(missing_ok=True)


def last_seq(path: Path) -> int:
    """The highest ``seq`` in the file's last complete lines (reads only the tail)."""
    try:
        fh = open_regular(path)
    except FileNotFoundError:
        return 0
    with fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    for raw in reversed(tail.split(b"\n")):
        try:
            event = json.loads(raw)
        except JSON_ERRORS:
            continue
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            return event["seq"]
    return 0


@dataclass
class EventReader:
    """Tails an event log from a byte offset; returns only whole, parseable lines.

    Garbage lines are counted in ``bad_lines`` and skipped; a torn last line stays buffered
    until its newline arrives. Cheap to poll: one ``stat`` when nothing changed.
    """

    path: Path
    offset: int = 0
    bad_lines: int = 0
    error: str | None = None
    """Why the log cannot be read right now (``events.jsonl: permission denied``), or None."""
    _partial: bytes = b""
    _inode: int | None = None
    _skipping: bool = False

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """New whole events. Never raises for the file's sake: a log that cannot be read (a folder, a FIFO,
        another user's file) returns nothing and says why in ``error``, so a poller keeps polling."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.error = describe_os_error(self.path, exc)
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
            # Replaced or truncated: start over rather than read garbage from a stale offset.
            self.offset, self._partial, self._skipping = 0, b"", False
        self._inode = st.st_ino
        if stat.S_ISREG(st.st_mode) and st.st_size <= self.offset:
            return []
        try:
            with open_regular(self.path) as fh:
                fh.seek(self.offset)
                chunk = fh.read(max_bytes) if max_bytes else fh.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.error = describe_os_error(self.path, exc)
            return []
        self.error = None
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended on a newline
        if self._skipping and lines:
            lines.pop(0)  # the end of an over-long line whose start was dropped
            self._skipping = False
            self.bad_lines += 1
        if len(self._partial) > MAX_LINE_BYTES:
            # A line longer than any event: drop what we have of it rather than buffer it without bound.
            self._partial, self._skipping = b"", True
        return list(self.parse_lines(lines))

    def parse_lines(self, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
        """Events from raw lines; blank lines are skipped, garbage is counted in ``bad_lines``."""
        for raw in lines:
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_BYTES:
                self.bad_lines += 1
                continue
            try:
                event = _loads(raw)
            except JSON_ERRORS:
                self.bad_lines += 1
                continue
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                self.bad_lines += 1
                continue
            yield event


# How a log line looks to a byte search (the writer's ``json.dumps`` spacing, and compact JSON).
_LOG_MARKS = (b'"type": "log"', b'"type":"log"')


def preview_history(path: Path | str, max_points: int = 2000, tail_logs: int = 200) -> RunHistory:
    """A quick, thinned fold of a long log, for a first paint before the full fold lands.

    Every line that is not a ``log`` event is folded (``started``, ``resumed``, checkpoints,
    resources, the terminal event), and so are the newest ``tail_logs`` logs (latest values,
    throughput, ETA); older logs are thinned to about ``max_points``. A byte search tells log
    lines apart without parsing them, and parsing is the whole cost: a 100,000-event log folds
    in about a tenth of the time. A log line the search misses is simply folded in full. The
    result has ``complete=False``; its curves have the true shape (a chart has fewer columns
    than ``max_points``) but not every step.
    """
    try:
        with open_regular(path) as fh:
            data = fh.read()
    except OSError:
        return RunHistory()
    lines = data.split(b"\n")
    lines.pop()  # b"" after the final newline, or a torn last line (not yet an event)
    is_log = [any(mark in line for mark in _LOG_MARKS) for line in lines]
    n_logs = sum(is_log)
    thin_until = n_logs - tail_logs  # log ordinal from which every log is kept
    stride = max(1, -(-thin_until // max_points)) if thin_until > 0 else 1
    kept: list[bytes] = []
    ordinal = 0
    for line, log in zip(lines, is_log, strict=True):
        if log:
            if ordinal < thin_until and ordinal % stride:
                ordinal += 1
                continue
            ordinal += 1
        kept.append(line)
    history = RunHistory(complete=stride == 1)
    history.apply(EventReader(Path(path)).parse_lines(kept))
    history.event_count = sum(1 for line in lines if line.strip())
    return history


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """Every complete event in a log (convenience for tests and the CLI)."""
    return EventReader(Path(path)).read_new()


def _chartable(metrics: dict[Any, Any]) -> dict[str, float | int | None]:
    """A log's metrics as chart points: finite numbers kept, null and non-finite numbers as gaps (None),
    anything else (a string, a list) dropped."""
    out: dict[str, float | int | None] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            continue
        if value is None or isinstance(value, float) and not math.isfinite(value):
            out[name] = None
        elif finite_number(value) is not None:
            out[name] = value
    return out


EVAL_PREFIX = "eval_"
"""How the Trainer names the metrics of an evaluation on the eval split."""


@dataclass
class RunHistory:
    """Folds events into what a monitor shows. Feed it batches with :meth:`apply`.

    Keeps one point per step per metric: a resumed attempt supersedes points past its
    resume step, so the series has no gaps and no repeats.
    """

    started: dict[str, Any] | None = None
    series: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    eval_series: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    last_log: dict[str, Any] | None = None
    last_resource: dict[str, Any] | None = None
    last_checkpoint: dict[str, Any] | None = None
    terminal: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    attempt: int = 0
    max_steps: int | None = None
    event_count: int = 0
    first_t: float | None = None
    last_t: float | None = None
    # (t, step) of recent log events, for throughput and ETA.
    step_times: list[tuple[float, int]] = field(default_factory=list)
    _max_step: int = -1
    complete: bool = True
    """False for :func:`preview_history`'s thinned fold (older steps sampled)."""

    def apply(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.apply_one(event)

    def apply_one(self, event: dict[str, Any]) -> None:
        """Fold one event. Every field is checked (the log is a file anyone may have edited): a step or
        time out of range drops the event, a metric that is not a finite number is charted as a gap."""
        self.event_count += 1
        kind = event.get("type")
        t = event_time(event.get("t"))
        if t is not None:
            self.first_t = t if self.first_t is None else self.first_t
            self.last_t = t
        if kind == STARTED:
            self.started = event
            self.attempt = event_int(event.get("attempt")) or self.attempt or 1
            self.max_steps = event_int(event.get("max_steps")) or self.max_steps
            self.terminal = None
            self.step_times = []
        elif kind == RESUMED:
            self._truncate_after(event_int(event.get("step")))
            self.terminal = None
            self.step_times = []
        elif kind == LOG:
            step = event_int(event.get("step"), default=-1)
            raw = event.get("metrics") or {}
            if step < 0 or not isinstance(raw, dict):
                return
            metrics = _chartable(raw)
            event = {**event, "metrics": metrics}
            if event.get("summary"):
                # The end-of-training summary (train_runtime, train_loss, …) repeats the last step:
                # keep it aside, or it would truncate that step's real points.
                self.summary = metrics
                return
            if any(name.startswith(EVAL_PREFIX) for name in metrics):
                # The Trainer logs an evaluation's results as an ordinary log at the step it just logged
                # the train metrics for: those are eval points, not a repeat of that step (the epoch it
                # adds to every log is the train point's to show).
                self._add_eval(step, {k: v for k, v in metrics.items() if k.startswith(EVAL_PREFIX)})
                return
            if step <= self._max_step:  # a repeated step: a resumed attempt supersedes it
                self._truncate_after(step - 1)
            self._max_step = step
            for name, value in metrics.items():
                self.series.setdefault(name, []).append((step, value))
            self.last_log = event
            if t is not None:
                self.step_times.append((t, step))
                del self.step_times[:-50]
        elif kind == EVAL:
            step = event_int(event.get("step"), default=-1)
            raw = event.get("metrics") or {}
            if step >= 0 and isinstance(raw, dict):
                self._add_eval(step, _chartable(raw))
        elif kind == RESOURCE:
            self.last_resource = event
        elif kind == CHECKPOINT:
            self.last_checkpoint = event
        elif kind == WARNING:
            self.warnings.append(event)
        elif kind == SAMPLE:
            self.samples.append(event)
        elif kind in TERMINAL_TYPES:
            self.terminal = event

    def _add_eval(self, step: int, metrics: dict[str, float | int | None]) -> None:
        """Eval-named values as eval points, one per step: the eval event repeats what the eval log said,
        and a resumed attempt's evaluation supersedes the one before it at that step."""
        for name, value in metrics.items():
            points = self.eval_series.setdefault(name, [])
            while points and points[-1][0] >= step:
                points.pop()
            points.append((step, value))

    def _truncate_after(self, step: int) -> None:
        for points in (*self.series.values(), *self.eval_series.values()):
            while points and points[-1][0] > step:
                points.pop()
        self._max_step = min(self._max_step, step)

    @property
    def step(self) -> int:
        if self.last_log is None:
            return 0
        return int(self.last_log.get("step") or 0)

    def latest(self, metric: str) -> float | None:
        points = self.series.get(metric)
        return points[-1][1] if points else None

    def steps_per_second(self) -> float | None:
        if len(self.step_times) < 2:
            return None
        (t0, s0), (t1, s1) = self.step_times[0], self.step_times[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta_seconds(self) -> float | None:
        rate = self.steps_per_second()
        if not rate or not self.max_steps:
            return None
        return max(0.0, (self.max_steps - self.step) / rate)
