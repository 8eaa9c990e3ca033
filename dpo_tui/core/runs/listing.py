"""The runs root: which folders are runs, finding one by id, and the runs list (one summary row per run).

:class:`RunLister` is ``list_runs`` for a caller that re-lists every few seconds (the console).
"""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import UserError, first_line
from ..fsutil import JSON_ERRORS
from ..run_states import TERMINAL_STATES
from .folder import CONFIG_FILE, STATUS_FILE, Run
from .status import read_run_json

printable = ev.printable


def _exists(path: Path) -> bool | None:
    """Whether ``path`` exists; None when that cannot be known (a folder we may not look into)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        return None if exc.errno in (errno.EACCES, errno.EPERM) else False
    return True


def is_run_dir(path: Path) -> bool:
    """A folder in the runs root holding a run's files. A folder we may not look into (another user's
    run in a shared root) counts, so it is listed as unreadable rather than silently hidden. Never
    raises: a name too long for the filesystem, or any other error, is simply not a run."""
    if path.name.startswith(".") or path.name == "lost+found":
        return False
    try:
        if not path.is_dir():
            return False
    except OSError:
        return False
    marks = [_exists(path / name) for name in (CONFIG_FILE, STATUS_FILE, ev.EVENTS_FILE)]
    return any(marks) or None in marks


def made_by_dpo_tui(path: Path) -> bool:
    """Not just any folder with a config.json (a model folder has one): a status.json or event log beside a
    config.json that is a run config. A path given on the command line must pass this before anything is
    written to it or deleted."""
    if not (_exists(path / STATUS_FILE) or _exists(path / ev.EVENTS_FILE)):
        return False
    try:
        data = read_run_json(path / CONFIG_FILE, path.name)
    except FileNotFoundError:
        return True
    except (OSError, UserError):
        return True  # a damaged run folder is still a run (listed as unreadable)
    return isinstance(data, dict) and "beta" in data and "model_type" not in data and "architectures" not in data


def find_run(root: Path, run_id: str) -> Run:
    """A run by id, unique id prefix, or path. Raises a UserError naming close matches."""
    if not run_id or "\x00" in run_id:
        raise UserError("No run id given")
    shown = printable(run_id)
    as_path = Path(run_id).expanduser()
    if as_path.is_absolute() or os.sep in run_id:
        # Absolute here, once: the supervisor runs inside the run folder, so a relative path handed on
        # to it would be resolved a second time, from there.
        as_path = Path(os.path.abspath(as_path))
        if is_run_dir(as_path) and made_by_dpo_tui(as_path):
            return Run(as_path)
        raise UserError(f"No run folder at {printable(str(Path(run_id).expanduser()))}",
                        hint="a run folder holds the config.json and status.json that dpo-tui wrote")
    root = Path(os.path.abspath(root))
    exact = root / run_id
    if is_run_dir(exact):
        return Run(exact)
    try:
        children = list(root.iterdir()) if root.is_dir() else []
    except OSError:
        children = []
    if children:
        matches = sorted(p for p in children if p.name.startswith(run_id) and is_run_dir(p))
        if len(matches) == 1:
            return Run(matches[0])
        if len(matches) > 1:
            names = ", ".join(printable(m.name) for m in matches[:5])
            raise UserError(f"Run id '{shown}' is ambiguous: {names}", hint="give more of the id")
    raise UserError(f"No run '{shown[:120]}{'…' if len(shown) > 120 else ''}' in {root}",
                    hint="`dpo-tui runs` lists the runs; --runs-dir picks another root")


def list_run_dirs(root: Path) -> list[Path]:
    try:
        if not root.is_dir():
            return []
        children = list(root.iterdir())
    except OSError as exc:
        raise UserError(f"Cannot read the runs root {root}: {(exc.strerror or first_line(exc)).lower()}",
                        hint="--runs-dir picks another root") from None
    return sorted((p for p in children if is_run_dir(p)), key=lambda p: p.name, reverse=True)




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


def last_log_metrics(events_path: Path, tail_bytes: int = 65536, max_bytes: int = 8 << 20) -> dict[str, float | int | None]:
    """Metrics of the newest ``log`` event, read from the file's end backwards (fast for 1,000 runs).

    Reads ``tail_bytes`` at a time and goes further back past garbage (a torn or over-long line) up to
    ``max_bytes``. Only finite numbers are returned: a metric that is a string or 1e999 reads as absent.
    """
    try:
        fh = ev.open_regular(events_path)
    except OSError:
        return {}
    with fh:
        try:
            end = fh.seek(0, os.SEEK_END)
        except OSError:
            return {}
        pos, carry = end, b""
        while pos > 0 and end - pos < max_bytes:
            start = max(0, pos - tail_bytes)
            fh.seek(start)
            block = fh.read(pos - start) + carry
            pos = start
            lines = block.split(b"\n")
            carry = lines.pop(0) if pos > 0 else b""  # maybe the end of a line that starts further back
            if len(carry) > ev.MAX_LINE_BYTES:
                carry = b""  # an over-long line is garbage: never hold it whole
            for raw in reversed(lines):
                found = _log_metrics(raw)
                if found is not None:
                    return found
        return _log_metrics(carry) or {}


def _log_metrics(raw: bytes) -> dict[str, float | int | None] | None:
    if len(raw) > ev.MAX_LINE_BYTES or (b'"type": "log"' not in raw and b'"type":"log"' not in raw):
        return None
    try:
        event = json.loads(raw)
    except JSON_ERRORS:
        return None
    if isinstance(event, dict) and isinstance(event.get("metrics"), dict) and not event.get("summary"):
        metrics = {k: ev.finite_number(v) for k, v in event["metrics"].items() if isinstance(k, str)}
        # The Trainer logs an evaluation as a log of eval_ values: the row's loss and margin are the train
        # ones, so look further back for them.
        if metrics and all(k.startswith("eval_") or k == "epoch" for k in metrics):
            return None
        return metrics
    return None


def summarize(path: Path, reconcile: bool = True) -> RunSummary:
    """One runs-list row. ``reconcile=False`` reports a dead run as crashed without writing status.json
    (the console's promise: opening it changes nothing)."""
    run = Run(path)
    try:
        status = run.status(reconcile=reconcile)
        config = run.config()
    except UserError as exc:
        return RunSummary(id=path.name, path=path, state="unreadable", error=printable(exc.summary))
    except OSError as exc:
        return RunSummary(id=path.name, path=path, state="unreadable",
                          error=f"Run {path.name}: {(exc.strerror or first_line(exc)).lower()}")
    except Exception as exc:  # noqa: BLE001 - one damaged folder must never break the listing of the others
        return RunSummary(id=path.name, path=path, state="unreadable", error=f"Run {path.name}: {type(exc).__name__}: {first_line(exc)}")
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

