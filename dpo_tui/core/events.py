"""The event log wire format, defined once for the trainer (writer) and the UI/CLI (readers).

``events.jsonl`` is append-only, one JSON object per line, fsync'd per event::

    {"v":1,"seq":17,"t":1764192000.12,"attempt":1,"type":"log","step":40,"epoch":0.8,
     "metrics":{"loss":0.52,"rewards/margins":0.91},"nonfinite":[]}

Rules (``docs/run-directory.md``, "Events"): a reader keeps a byte offset and reads whole lines only (a last line
without ``\\n`` is a torn write: wait for it); unknown types and fields are ignored; NaN/Inf
are written as ``null`` and listed in ``nonfinite``. A resumed attempt writes a ``resumed``
event; readers drop earlier ``log`` events with a step above the resume step, so a metric
series never repeats or skips a step.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_loads: Callable[[bytes | str], Any]
try:  # 3-5x faster parsing of long event logs (reattach to a 100,000-event run); optional.
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the stdlib parser is the fallback
    _loads = json.loads

EVENT_VERSION = 1
EVENTS_FILE = "events.jsonl"

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
        self._seq = last_seq(self.path)
        # A previous attempt killed mid-write leaves a torn line: start ours on a fresh line.
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the writer
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
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return event

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def last_seq(path: Path) -> int:
    """The highest ``seq`` in the file's last complete lines (reads only the tail)."""
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    for raw in reversed(tail.split(b"\n")):
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
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
    _partial: bytes = b""
    _inode: int | None = None

    def read_new(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
            # Replaced or truncated: start over rather than read garbage from a stale offset.
            self.offset, self._partial = 0, b""
        self._inode = st.st_ino
        if st.st_size <= self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(max_bytes) if max_bytes else fh.read()
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended on a newline
        return list(self.parse_lines(lines))

    def parse_lines(self, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
        """Events from raw lines; blank lines are skipped, garbage is counted in ``bad_lines``."""
        for raw in lines:
            if not raw.strip():
                continue
            try:
                event = _loads(raw)
            except (ValueError, UnicodeDecodeError):
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
        data = Path(path).read_bytes()
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
        self.event_count += 1
        kind = event.get("type")
        t = event.get("t")
        if isinstance(t, (int, float)):
            self.first_t = t if self.first_t is None else self.first_t
            self.last_t = t
        if kind == STARTED:
            self.started = event
            self.attempt = int(event.get("attempt") or self.attempt or 1)
            if event.get("max_steps"):
                self.max_steps = int(event["max_steps"])
            self.terminal = None
            self.step_times = []
        elif kind == RESUMED:
            self._truncate_after(int(event.get("step") or 0))
            self.terminal = None
            self.step_times = []
        elif kind == LOG:
            step = event.get("step")
            metrics = event.get("metrics") or {}
            if not isinstance(step, int) or not isinstance(metrics, dict):
                return
            if event.get("summary"):
                # The end-of-training summary (train_runtime, train_loss, …) repeats the last step:
                # keep it aside, or it would truncate that step's real points.
                self.summary = metrics
                return
            if step <= self._max_step:  # a repeated step: a resumed attempt supersedes it
                self._truncate_after(step - 1)
            self._max_step = step
            for name, value in metrics.items():
                if value is None or isinstance(value, (int, float)):
                    self.series.setdefault(name, []).append((step, value))
            self.last_log = event
            if isinstance(t, (int, float)):
                self.step_times.append((t, step))
                del self.step_times[:-50]
        elif kind == EVAL:
            step = event.get("step")
            for name, value in (event.get("metrics") or {}).items():
                if isinstance(step, int) and (value is None or isinstance(value, (int, float))):
                    self.eval_series.setdefault(name, []).append((step, value))
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

    def _truncate_after(self, step: int) -> None:
        for points in self.series.values():
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
