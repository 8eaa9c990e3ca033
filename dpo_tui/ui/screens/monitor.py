"""The monitor: one run's live charts, progress, resources, health and log tail.

This is the base screen of the ``monitor`` mode, so it keeps following its run while the
operator looks at other modes (popping a screen would cancel its workers; a mode's base screen
is never popped).

Data flow:

- :meth:`show_run` starts a thread worker that folds the whole event log into a fresh
  :class:`RunHistory` (10,000 events in well under a second) and posts :class:`HistoryLoaded`.
  A log over ``PREVIEW_ABOVE_BYTES`` (about 20,000 events) is first folded thinned
  (:func:`events.preview_history`, a tenth of the cost), so a 100,000-event run shows its whole
  curves at once and the exact fold replaces them a moment later.
- A timer then reads new events by byte offset every ``poll_interval`` (0.1 s) on the UI
  thread (one ``stat`` when nothing changed), folds them, and redraws at once if anything
  changed. So an event is on screen within one poll interval plus one render, and a burst of
  events costs one redraw per tick, not one per event.
- Once a second a thread worker re-reads ``status.json`` (with crash reconciliation) and the
  tail of ``trainer.log`` and posts :class:`StatusRead`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.message import Message

from ...core import events as ev
from ...core.checkpoints import FINAL, Candidate, pick_best
from ...core.errors import UserError
from ...core.health import HealthContext, assess, eval_points, headline
from ...core.run_states import ACTIVE_STATES, RESUMABLE_STATES
from ..messages import Latest, Notice, Snapshot
from ..run_job_actions import RunJobScreen
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.health import HealthPanel
from ..widgets.metric_chart import MetricChart, Series
from ..widgets.run_panels import (
    LogTail,
    TextPanel,
    checkpoint_text,
    outcome_text,
    progress_text,
    resources_text,
    tail_lines,
)

LOG_TAIL_BYTES = 16384
PREVIEW_ABOVE_BYTES = 8 << 20
STATUS_EVERY_S = 1.0
READ_CHUNK = 8 << 20

CHARTS = (
    ("chart-loss", "loss", ("loss",)),
    ("chart-margins", "reward margin", ("rewards/margins",)),
    ("chart-accuracy", "reward accuracy", ("rewards/accuracies",)),
    ("chart-rewards", "rewards", ("rewards/chosen", "rewards/rejected")),
)
SERIES_LABELS = {"rewards/chosen": "chosen", "rewards/rejected": "rejected"}


def chart_series(h: ev.RunHistory, metrics: tuple[str, ...]) -> list[Series]:
    """A chart's train series, and beside each its eval-split series when the run has an eval split
    (labelled ``train``/``eval`` so the title's legend tells the lines apart)."""
    out: list[Series] = []
    for m in metrics:
        evals = eval_points(h, m)
        label = SERIES_LABELS.get(m, m)
        if evals:
            out.append(Series(f"{label if len(metrics) > 1 else 'train'}", h.series.get(m, [])))
            out.append(Series(f"eval {label}" if len(metrics) > 1 else "eval", evals))
        else:
            out.append(Series(label, h.series.get(m, [])))
    return out


@dataclass
class LoadedRun:
    run_id: str
    history: ev.RunHistory
    reader: ev.EventReader | None
    config: Any
    elapsed: float
    """CPU seconds the load took (thread time: waiting for the GIL or a busy CPU does not count)."""
    preview: bool = False
    """A thinned first fold; the full one follows (and only it carries the reader)."""


@dataclass
class RunSnapshot:
    """Everything slow to read about a run, gathered off the UI thread."""

    run_id: str
    status: Any
    stalled_seconds: float | None
    resume_checkpoint: str | None
    log_lines: list[str] = field(default_factory=list)
    error: str | None = None
    final_weights: str | None = None
    """The final adapter's (or full model's) folder name once saved completely."""
    saved: list[Candidate] = field(default_factory=list)
    """Complete checkpoints and the final weights, for the best-by-eval-loss note."""


class MonitorScreen(RunJobScreen):
    """Follows one run. Keys: stop, resume, chat, smoothing, health details, back to the runs."""

    BINDINGS = [
        Binding("s", "stop_run", "Stop", id="monitor.stop", tooltip="Stop the run (checkpoint at the next step)"),
        Binding("r", "resume_run", "Resume", id="monitor.resume", tooltip="Resume from the newest complete checkpoint"),
        Binding("c", "chat_run", "Chat", id="monitor.chat", tooltip="Chat with this run's adapter beside the base model"),
        Binding("P", "pairs_from_run", "Pairs from this run", id="monitor.pairs", show=False,
                tooltip="Round two: generate candidate pairs from this run's tuned model"),
        Binding("e", "export_run", "Export", id="monitor.export", show=False,
                tooltip="Export the run: merged weights, GGUF, Ollama, hub"),
        Binding("E", "evaluate", "Evaluate", id="monitor.evaluate", show=False, tooltip="Evaluate this run against its base"),
        Binding("R", "eval_results", "Eval results", id="monitor.eval-results", show=False, tooltip="This run's evaluation"),
        Binding("m", "toggle_smoothing", "Smooth", id="monitor.smooth", tooltip="Toggle curve smoothing (EMA)"),
        Binding("h", "health_details", "Health", id="monitor.health", tooltip="Every health finding, not just the headline"),
        Binding("escape", "back", "Runs", id="monitor.back", tooltip="Back to the runs overview"),
    ]

    @dataclass
    class HistoryLoaded(Snapshot):
        """A fold of the run's whole event log: the thinned preview of a big log, then the exact one.

        Posted by the ``monitor-load`` thread worker (:meth:`_load_history`) once per load, twice for
        a log over ``PREVIEW_ABOVE_BYTES``; ``ticket`` is the load's, from ``_loads``.
        """

        loaded: LoadedRun
        ticket: int

    @dataclass
    class StatusRead(Snapshot):
        """The run's ``status.json`` (reconciled), stall, newest complete checkpoint and log tail.

        Posted by the ``monitor-status`` thread worker (:meth:`_read_status`) about once a second and
        right after a stop, resume or terminal event; ``ticket`` is the read's, from ``_status_reads``.
        """

        snapshot: RunSnapshot
        ticket: int

    @dataclass
    class Redrawn(Message):
        """A redraw showed new events: the step on screen and the newest event's age (None when unknown).

        Posted by :meth:`_redraw` on the UI thread after each redraw; tests and ``bench/load_check.py``
        listen for it to measure event-to-screen latency.
        """

        step: int
        latency: float | None

    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None
        self.history = ev.RunHistory()
        self.reader: ev.EventReader | None = None
        self.config: Any = None
        self.snapshot: RunSnapshot | None = None
        self.smooth = False
        self.loaded = False
        self._dirty = False
        self._newest_t: float | None = None
        self._last_status = 0.0
        self.latencies: deque[float] = deque(maxlen=2000)
        """Seconds from an event's timestamp to the redraw that showed it (newest event per redraw)."""
        self.load_seconds: float | None = None
        """CPU seconds the last full-history load took."""
        self._history_arrived = False
        """A fold of the current run's log (thinned preview or full) has been handed over."""
        self._loads = Latest()
        """Tickets of history loads: only the newest load (the run now shown) is folded in."""
        self._status_reads = Latest()
        """Tickets of status reads: reads overlap on a slow disk, so any newer than the one shown is kept."""

    # --- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="monitor-title")
        yield TextPanel(id="monitor-progress")
        yield HealthPanel(id="health")
        with Grid(id="charts"):
            for chart_id, title, _ in CHARTS:
                yield MetricChart(title, id=chart_id, classes="chart")
        with Horizontal(id="monitor-info"):
            yield TextPanel(id="monitor-resources")
            yield TextPanel(id="monitor-checkpoint")
        yield LogTail(id="log-tail")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        services = self.services
        self.set_interval(services.poll_interval, self._tick, name="monitor-poll")
        pending = self.console.monitor_run_id
        if pending and pending != self.run_id:
            self.show_run(pending)
        elif self.run_id:
            self._start_load()
        else:
            self._show_empty()

    def _show_empty(self) -> None:
        self.query_one("#monitor-title", TextPanel).show(
            Text("No run open. Press 2 for the runs overview, or 1 to set up a new run.", style="bold")
        )
        self.query_one(HealthPanel).display = False  # it would say "reading the event log"

    # --- choosing a run -------------------------------------------------------------------------
    def show_run(self, run_id: str) -> None:
        """Follow ``run_id`` from its first event. Safe to call before the screen is mounted."""
        self.run_id = run_id
        self.history = ev.RunHistory()
        self.reader = None
        self.config = None
        self.snapshot = None
        self.loaded = False
        self._history_arrived = False
        self._newest_t = None
        self._last_status = 0.0
        self._status_reads.invalidate()  # a read of the previous run must not land on this one
        if self.is_mounted:
            self._start_load()

    def _run_path(self) -> Path:
        return self.services.runs_root / (self.run_id or "")

    def _start_load(self) -> None:
        if not self.run_id:
            return
        self.query_one(HealthPanel).display = True
        self.query_one("#monitor-title", TextPanel).show(f"{self.run_id} · loading…")
        self._load_history(self._loads.issue(), self.run_id, self._run_path())
        self._read_status(self._status_reads.issue(), self.run_id, self._run_path())

    @work(thread=True, exclusive=True, group="monitor-load", exit_on_error=False, description="read the event log")
    def _load_history(self, ticket: int, run_id: str, path: Path) -> None:
        started = time.thread_time()
        config = None
        try:
            from ...core.runs import Run

            config = Run(path).config()
        except (UserError, OSError):
            config = None
        events_path = path / ev.EVENTS_FILE
        try:
            big = events_path.stat().st_size > PREVIEW_ABOVE_BYTES
        except OSError:
            big = False
        if big:
            preview = ev.preview_history(events_path)
            self.post_message(self.HistoryLoaded(
                LoadedRun(run_id, preview, None, config, time.thread_time() - started, preview=True), ticket))
        reader = ev.EventReader(events_path)
        history = ev.RunHistory()
        try:
            while True:
                batch = reader.read_new(max_bytes=READ_CHUNK)
                if not batch:
                    break
                history.apply(batch)
        except OSError as exc:  # unreadable log: show what was read; the title says the rest
            reader.error = ev.describe_os_error(events_path, exc)
        if reader.error:
            self.post_message(Notice("Monitor", f"Cannot read {ev.printable(str(events_path))}: {reader.error}", "error"))
        self.post_message(self.HistoryLoaded(LoadedRun(run_id, history, reader, config, time.thread_time() - started), ticket))

    @on(HistoryLoaded)
    def _history_loaded(self, message: HistoryLoaded) -> None:
        if not self._loads.is_latest(message.ticket):
            return  # the operator switched runs while this one loaded
        loaded = message.loaded
        if loaded.preview and self.loaded:
            return  # the full fold already landed (it never does first, but a preview must not undo it)
        # The worker handed over its objects; from here the UI thread owns them.
        self.history, self.reader, self.config = loaded.history, loaded.reader, loaded.config
        self._history_arrived = True
        if loaded.preview:
            self._newest_t = None
            self._dirty = True
            self._tick()
            return
        self.load_seconds = loaded.elapsed
        self.loaded = True
        self._newest_t = self.history.last_t
        self._dirty = True
        self._tick()
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="monitor-status", exit_on_error=False, description="read the run status")
    def _read_status(self, ticket: int, run_id: str, path: Path) -> None:
        from ...core.runs import Run

        run = Run(path)
        try:
            status = run.status()
        except UserError as exc:
            self.post_message(self.StatusRead(RunSnapshot(run_id, None, None, None, error=exc.summary), ticket))
            return
        except OSError as exc:
            self.post_message(self.StatusRead(RunSnapshot(run_id, None, None, None, error=str(exc)), ticket))
            return
        stalled = None
        if run.is_stalled(status) and status.heartbeat is not None:
            stalled = time.time() - status.heartbeat
        complete = [c for c in run.checkpoints() if c.complete]
        ckpt = complete[-1] if complete else None
        final = run.final_weights_dir()
        saved = [Candidate(f"checkpoint-{c.step}", c.step, c.path) for c in complete]
        if final is not None:
            saved.append(Candidate(FINAL, max([status.step or 0, *(c.step for c in complete)]), final))
        lines: list[str] = []
        try:
            with open(run.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - LOG_TAIL_BYTES))
                lines = tail_lines(fh.read(), 40)
        except OSError:
            pass
        snapshot = RunSnapshot(run_id, status, stalled, ckpt.path.name if ckpt else None, lines,
                               final_weights=final.name if final is not None else None, saved=saved)
        self.post_message(self.StatusRead(snapshot, ticket))

    @on(StatusRead)
    def _status_read(self, message: StatusRead) -> None:
        if not self._status_reads.accept(message.ticket):
            return  # a read of the previous run, or older than the one shown
        previous = self.state
        self.snapshot = message.snapshot
        self._dirty = True
        if previous != self.state:
            self.refresh_bindings()

    # --- the cadence ----------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.run_id is None:
            return
        if self.reader is not None and self.loaded:
            events = self.reader.read_new(max_bytes=READ_CHUNK)
            if events:
                self.history.apply(events)
                newest = events[-1].get("t")
                self._newest_t = newest if isinstance(newest, (int, float)) else self._newest_t
                self._dirty = True
                if any(e.get("type") in ev.TERMINAL_TYPES for e in events):
                    self._last_status = 0.0  # read the final status right away
        now = time.monotonic()
        if now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self._read_status(self._status_reads.issue(), self.run_id, self._run_path())
        # Nothing is drawn before the first fold (preview or full) lands: the title keeps saying
        # "loading…" rather than flashing empty charts and a state without history.
        if self._dirty and self.is_current and self._history_arrived:
            self._redraw()

    def on_screen_resume(self) -> None:
        self._dirty = True

    # --- drawing --------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        status = self.snapshot.status if self.snapshot else None
        if status is not None:
            return str(status.state)
        term = self.history.terminal
        if term is not None:
            return {"finished": "finished", "stopped": "stopped"}.get(term.get("type", ""), "failed")
        return "running" if self.history.started else "queued"

    def health_context(self) -> HealthContext:
        batch = None
        if self.config is not None:
            batch = int(self.config.per_device_batch_size) * int(self.config.gradient_accumulation)
        snap = self.snapshot
        return HealthContext(
            state=self.state,
            batch_size=batch,
            stalled_seconds=snap.stalled_seconds if snap else None,
            resume_checkpoint=snap.resume_checkpoint if snap else None,
        )

    def _title(self) -> Text:
        text = Text()
        text.append(ev.printable(self.run_id or ""), style="bold")
        if self.reader is not None and self.reader.error:  # first: a narrow terminal cuts the title's end
            text.append(f"  cannot read {self.reader.error}", style="bold")
        state = self.state
        text.append("  ")
        outcome = outcome_text(state, self.snapshot.status if self.snapshot else None, self.history)
        if len(text) + len(outcome) > self.size.width - 2 and state in ("stopped", "failed", "crashed"):
            # Too long for one line: keep what ended it; the health line below carries the message and hint.
            outcome = outcome.split(":", 1)[0].split(" — ", 1)[0]
        text.append(outcome, style="bold")
        cfg = self.config
        if cfg is not None:
            model = "tiny-chat" if cfg.model == "sample" else Path(str(cfg.model)).name or str(cfg.model)
            rank = f" r={cfg.lora_rank}" if cfg.method != "full" else " full"
            text.append(f"  {model} β={cfg.beta:g} {cfg.loss_type}{rank}", style="dim")
        if self.snapshot and self.snapshot.error:
            text.append(f"  ({ev.printable(self.snapshot.error)})", style="dim")

        if not self.history.complete:
            text.append(f"  reading all {self.history.event_count:,} events…", style="dim italic")
        return text

    def _redraw(self) -> None:
        self._dirty = False
        h = self.history
        with self.app.batch_update():
            self.query_one("#monitor-title", TextPanel).show(self._title())
            width = self.size.width
            live = self.state in ACTIVE_STATES
            now = self.services.clock() if live else None
            self.query_one("#monitor-progress", TextPanel).show(progress_text(h, self.state, width, now=now))
            findings = assess(h, self.health_context())
            panel = self.query_one(HealthPanel)
            panel.finding = findings[0] if findings else headline(h, self.health_context())
            panel.more = max(0, len(findings) - 1)
            self.set_class(self.state in ("failed", "crashed"), "-failed")
            self.set_class(self.state == "finished", "-finished")
            for chart_id, _, metrics in CHARTS:
                self.query_one(f"#{chart_id}", MetricChart).set_series(chart_series(h, metrics), smooth=self.smooth)
            self.query_one("#monitor-resources", TextPanel).show(resources_text(h.last_resource))
            snap = self.snapshot
            best = None
            eval_loss = eval_points(h, "loss")
            if snap is not None and snap.saved and eval_loss:
                best = pick_best(snap.saved, eval_loss, [])  # eval points are few: cheap on every redraw
            self.query_one("#monitor-checkpoint", TextPanel).show(checkpoint_text(
                h, snap.resume_checkpoint if snap else None,
                final=snap.final_weights if snap else None, best=best))
            if snap is not None:
                self.query_one(LogTail).show_lines(snap.log_lines[-self._log_rows():])
        latency = None
        if self._newest_t is not None:
            latency = time.time() - self._newest_t
            self.latencies.append(latency)
            self._newest_t = None
        self.post_message(self.Redrawn(h.step, latency))

    def _log_rows(self) -> int:
        return max(1, self.query_one(LogTail).size.height or 3)

    # --- actions --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("stop_run", "resume_run", "chat_run", "export_run", "pairs_from_run", "evaluate", "eval_results",
                      "health_details", "toggle_smoothing") and self.run_id is None:
            return False  # no run open: hidden, the empty state says how to open one
        # Stop and resume never apply together: hide the one that does not (footer room at 80 columns).
        if action == "stop_run":
            return self.state in ACTIVE_STATES
        if action == "resume_run":
            return self.state in RESUMABLE_STATES
        return True

    def action_toggle_smoothing(self) -> None:
        # No toast: each chart's title says "(smoothed)", and a toast's mount and fade cost a key's budget.
        self.smooth = not self.smooth
        self._dirty = True
        self._redraw()

    def action_health_details(self) -> None:
        findings = assess(self.history, self.health_context())
        if not findings:
            self.notify("Nothing to report yet.", title="Health")
            return
        self.notify("\n".join(f"• {f.message}" for f in findings), title="Health", markup=False, timeout=12)

    def action_back(self) -> None:
        self.app.switch_mode("runs")

    def job_run_id(self) -> str | None:
        return self.run_id

    def job_run_state(self) -> str:
        return self.state

    @on(Notice)
    def _after_action(self, message: Notice) -> None:
        # A stop or resume changes the status: read it at the next tick. The app shows the notice.
        self._last_status = 0.0
