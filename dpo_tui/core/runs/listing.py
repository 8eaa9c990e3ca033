"""The runs root: which folders are runs, finding one by id, and the runs list (one summary row per run).

:class:`RunLister` is ``list_runs`` for a caller that re-lists every few seconds (the console).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import UserError
from ..fsutil import read_json
from ..run_states import TERMINAL_STATES
from .folder import CONFIG_FILE, STATUS_FILE, Run


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

