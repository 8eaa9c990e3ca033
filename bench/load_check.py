"""Load check: the console under many runs and long event logs.

Three measurements, each against a baseline measured in the same process:

1. **Streaming.** 10 runs stream into one console at 20 events/s each for 10 minutes of simulated
   time: a fake writer process (``--writer``; ``core.events.EventWriter``, fsync per event, as the
   trainer writes) appends 12,000 real-format events per run, timestamps spread over 10 minutes,
   as fast as the disk allows (or ``--speed``× real time). Meanwhile the console (``DpoTuiApp``
   under ``run_test``) shows the runs overview and one run's monitor, and keys are pressed every
   0.2 s: smoothing toggle on the monitor, mode switches, cursor moves. Reported: input latency
   (key-to-screen, see :class:`KeyTimer`; ``pilot.press`` returning; the action handler running) p50/p95/max,
   RSS of the console process before/after/peak, and whether every event reached the monitor and
   the runs list. Baseline: the same keys on the same console with nothing streaming.
2. **1,000 runs.** Time until the runs overview lists 1,000 fixture runs with their states, vs. a
   plain pass that reads each run's status.json and config.json with ``json.loads``.
3. **A 100,000-event run.** Time from opening the monitor to the history folded and the first chart
   drawn, vs. a plain ``json.loads`` pass over the same file.

    python bench/load_check.py [--runs 10] [--rate 20] [--minutes 10] [--speed 0] [--json]

``tests/faults/test_load.py`` runs the same code with loose bounds, and ``bench/key_latency.py`` its
streaming measurement (key-to-screen, before and after the latency fixes). One script over 500 lines:
the three measurements share the fixture writers, the fake writer process and the key timer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest.mock import patch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

T0 = 1764192000.0
METRICS = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen",
           "logps/rejected", "logits/chosen", "logits/rejected", "grad_norm", "learning_rate")


# --- fixture writing ----------------------------------------------------------------------------
def _config_json(beta: float = 0.1) -> str:
    from dpo_tui.core.config import SAMPLE_PRESET, build_config

    return build_config({**SAMPLE_PRESET, "beta": beta}).to_json()


def metrics_at(step: int) -> dict[str, float]:
    margin = 0.002 * step + 0.05 * math.sin(step / 7)
    chosen = -0.001 * step
    return {
        "loss": math.log(2) * math.exp(-step / 4000), "rewards/margins": margin, "rewards/accuracies": min(1.0, 0.5 + step / 20000),
        "rewards/chosen": chosen, "rewards/rejected": chosen - margin, "logps/chosen": -40.0 - step / 1000,
        "logps/rejected": -45.0 - step / 800, "logits/chosen": -1.2, "logits/rejected": -1.3, "grad_norm": 1.0 + 0.1 * math.cos(step),
        "learning_rate": 5e-6,
    }


def event_kind(k: int) -> str:
    """The event mix of a busy run: mostly logs, a resource sample every 10th, an eval and a checkpoint now and then."""
    if k % 1200 == 0:
        return "eval"
    if k % 600 == 0:
        return "checkpoint"
    if k % 10 == 0:
        return "resource"
    return "log"


def event_fields(k: int, step: int) -> dict[str, Any]:
    kind = event_kind(k)
    if kind == "log":
        return {"step": step, "epoch": round(step / 5000, 4), "metrics": metrics_at(step)}
    if kind == "resource":
        return {"step": step, "rss": 900_000_000 + k, "cpu_percent": 95.0, "devices": [{"index": 0, "used": 40 << 30, "util": 97}]}
    if kind == "eval":
        return {"step": step, "metrics": {"eval_loss": 0.6, "eval_rewards/margins": 0.4}}
    return {"step": step, "path": f"checkpoints/checkpoint-{step}", "complete": True}


def count_logs(n_events: int) -> int:
    return sum(1 for k in range(1, n_events + 1) if event_kind(k) == "log")


def event_lines(n_events: int, t0: float = T0, rate: float = 20.0) -> list[str]:
    """The JSON lines of a whole run (started, ``n_events`` events, finished), written without EventWriter for speed."""
    n_logs = count_logs(n_events)
    lines = [json.dumps({"v": 1, "seq": 1, "t": t0, "attempt": 1, "type": "started", "max_steps": n_logs, "examples": 50_000})]
    step = 0
    for k in range(1, n_events + 1):
        kind = event_kind(k)
        step += kind == "log"
        event = {"v": 1, "seq": k + 1, "t": t0 + k / rate, "attempt": 1, "type": kind, **event_fields(k, step)}
        if kind == "log":
            event["nonfinite"] = []
        lines.append(json.dumps(event))
    lines.append(json.dumps({"v": 1, "seq": n_events + 2, "t": t0 + (n_events + 1) / rate, "attempt": 1, "type": "finished", "step": step}))
    return lines


def write_run(root: Path, run_id: str, status: dict[str, Any], events: list[str], config: str) -> Path:
    path = root / run_id
    path.mkdir(parents=True)
    (path / "config.json").write_text(config)
    (path / "status.json").write_text(json.dumps(status, indent=2))
    (path / "events.jsonl").write_text("".join(line + "\n" for line in events))
    (path / "trainer.log").write_text("loading model\ntokenizing\n")
    return path


def write_many_runs(root: Path, n: int = 1000) -> list[str]:
    """``n`` finished fixture runs (config, status, a short event log), written directly (no fsync)."""
    configs = {beta: _config_json(beta) for beta in (0.01, 0.05, 0.1, 0.3, 0.5)}
    ids = []
    for i in range(n):
        run_id = f"2025{(i // 1440) % 12 + 1:02d}{(i // 60) % 24 + 1:02d}-{i // 60 % 24:02d}{i % 60:02d}00-tiny-chat-b{i}"
        beta = list(configs)[i % 5]
        status = {"state": "finished", "attempt": 1, "host": "gpu-box", "step": 30, "max_steps": 30, "exit_code": 0,
                  "created_at": T0 + i * 60, "started_at": T0 + i * 60, "ended_at": T0 + i * 60 + 50, "updated_at": T0 + i * 60 + 50}
        write_run(root, run_id, status, event_lines(30 + 30 // 10)[: 36], configs[beta])
        ids.append(run_id)
    return ids


def write_big_run(root: Path, n_events: int = 100_000, run_id: str = "20251126-212000-tiny-chat-b0.1") -> Path:
    lines = event_lines(n_events - 2)
    status = {"state": "finished", "attempt": 1, "host": "gpu-box", "step": count_logs(n_events - 2), "max_steps": count_logs(n_events - 2),
              "exit_code": 0, "created_at": T0, "started_at": T0, "ended_at": T0 + n_events / 20, "updated_at": T0 + n_events / 20}
    return write_run(root, run_id, status, lines, _config_json())


def prepare_streaming_runs(root: Path, n_runs: int) -> list[str]:
    """Run folders waiting for the writer: config, a queued status, an empty event log."""
    ids = []
    for i in range(n_runs):
        run_id = f"20251126-2130{i:02d}-tiny-chat-b0.{i + 1}"
        status = {"state": "queued", "attempt": 0, "host": "", "created_at": time.time(), "updated_at": time.time()}
        write_run(root, run_id, status, [], _config_json(0.1 * (i + 1)))
        (root / run_id / "events.jsonl").write_text("")
        ids.append(run_id)
    return ids


# --- the fake writer (a separate process, so the console's RSS is its own) ------------------------
def writer_main(root: Path, run_ids: list[str], n_events: int, rate: float, speed: float) -> None:
    """One thread per run: ``started``, ``n_events`` events, ``finished``, through EventWriter (fsync'd)."""
    from dpo_tui.core import events as ev
    from dpo_tui.core.runs import Run, host_name, process_start_time

    me, start = os.getpid(), process_start_time(os.getpid())
    wall0 = time.time()
    errors: list[BaseException] = []

    def stream(run_id: str) -> None:
        try:
            run = Run(root / run_id)
            n_logs = count_logs(n_events)
            run.update_status(state="running", attempt=1, host=host_name(), pid=me, pid_start=start, heartbeat=time.time(),
                              started_at=time.time(), max_steps=n_logs, phase="training")
            step = 0
            last_status = time.time()
            with ev.EventWriter(run.events_path, attempt=1) as writer:
                writer.emit(ev.STARTED, t=T0, max_steps=n_logs, examples=50_000, world_size=1, device="cuda:0")
                for k in range(1, n_events + 1):
                    kind = event_kind(k)
                    step += kind == "log"
                    writer.emit(kind, t=T0 + k / rate, **event_fields(k, step))
                    if speed > 0:
                        delay = wall0 + k / rate / speed - time.time()
                        if delay > 0:
                            time.sleep(delay)
                    if time.time() - last_status > 1.0:
                        run.update_status(heartbeat=time.time(), step=step)
                        last_status = time.time()
                writer.emit(ev.FINISHED, t=T0 + (n_events + 1) / rate, step=step)
            run.update_status(state="finished", step=step, exit_code=0, ended_at=time.time(), heartbeat=time.time(), phase="done")
        except BaseException as exc:  # noqa: BLE001 - reported by the parent through the exit code
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"writer failed: {errors[0]!r}")


def start_writer(root: Path, run_ids: list[str], n_events: int, rate: float, speed: float) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--writer", str(root), "--run-ids", ",".join(run_ids),
           "--events", str(n_events), "--rate", str(rate), "--speed", str(speed)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)


# --- the console ------------------------------------------------------------------------------------
def make_services(root: Path, **overrides: Any) -> Any:
    from dpo_tui.ui.services import Services

    values: dict[str, Any] = {
        "runs_root": root, "host_label": "gpu-box", "gpu_inventory": lambda: None, "animate": False,
        "load_settings": lambda: None, "discover_models": lambda roots: [],
    }
    values.update(overrides)
    return Services(**values)


def history_bytes(history: Any) -> int:
    """Approximate bytes held by a RunHistory's metric series (lists of (step, value) tuples)."""
    total = 0
    for series in (history.series, history.eval_series):
        for points in series.values():
            total += sys.getsizeof(points)
            for point in points:
                total += sys.getsizeof(point) + sys.getsizeof(point[1]) + (sys.getsizeof(point[0]) if point[0] > 256 else 0)
    return total


def traced_now() -> int | None:
    """Live Python heap (tracemalloc, when ``--trace`` started it) after a full collection."""
    import gc
    import tracemalloc

    if not tracemalloc.is_tracing():
        return None
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(pct(values, 0.5) * 1000, 1), "p95_ms": round(pct(values, 0.95) * 1000, 1),
            "max_ms": round(max(values, default=float("nan")) * 1000, 1)}


async def wait_until(pilot: Any, condition: Any, timeout: float, what: str) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.01)
    return time.perf_counter() - started


class KeyTimer:
    """Presses keys and times each three ways:

    * ``screen`` (key-to-screen): from sending the key until its binding ran, every message that
      had queued by then (on the app and the current screen's widgets) was handled, and the screen
      painted the result (``call_after_refresh``: after the next compositor update, or at once when
      nothing is dirty). This is what an operator waits for.
    * ``press``: until ``pilot.press`` returns. Pilot also waits for the *whole process* to go idle
      (``wait_for_idle``: a 20 ms window with under 1 ms of CPU, at most 1 s, twice), so while runs
      stream it mostly measures the streaming, not the key.
    * ``handler``: until the action handler starts (the smoothing toggle and the mode switch are wrapped).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.press: list[float] = []
        self.screen: list[float] = []
        self.handler: list[float] = []
        self.by_key: dict[str, list[float]] = {}
        self.screen_by_key: dict[str, list[float]] = {}
        self._sent = 0.0
        self._painted: asyncio.Event | None = None
        self._key = ""
        original_mode = app.action_mode

        def action_mode(mode: str) -> None:
            self.handler.append(time.perf_counter() - self._sent)
            original_mode(mode)

        app.action_mode = action_mode
        original_bindings = app._check_bindings

        async def check_bindings(key: str, priority: bool = False) -> bool:
            handled = await original_bindings(key, priority)
            if handled and self._painted is not None and not self._painted.is_set():
                self._after_queued(self._painted)
            return bool(handled)

        app._check_bindings = check_bindings

    def _after_queued(self, painted: asyncio.Event) -> None:
        """Set ``painted`` once everything queued so far is handled and the screen has painted it."""
        screen = self.app.screen
        pumps = [self.app, *screen.walk_children(with_self=True)]
        pending = {"n": 0}
        sent = self._sent

        def mark() -> None:
            if not painted.is_set():
                elapsed = time.perf_counter() - sent
                self.screen.append(elapsed)
                self.screen_by_key.setdefault(self._key, []).append(elapsed)
                painted.set()

        def one_done() -> None:
            pending["n"] -= 1
            if pending["n"] == 0:
                self.app.screen.call_after_refresh(mark)

        for pump in pumps:
            if pump.call_later(one_done):
                pending["n"] += 1
        if pending["n"] == 0:
            self.app.screen.call_after_refresh(mark)

    def watch_monitor(self, screen: Any) -> None:
        original = type(screen).action_toggle_smoothing

        def toggle() -> None:
            self.handler.append(time.perf_counter() - self._sent)
            original(screen)

        screen.action_toggle_smoothing = toggle

    async def key(self, pilot: Any, key: str) -> None:
        self._painted = asyncio.Event()
        self._key = key
        self._sent = time.perf_counter()
        await pilot.press(key)
        self.press.append(time.perf_counter() - self._sent)
        self.by_key.setdefault(key, []).append(self.press[-1])
        try:
            await asyncio.wait_for(self._painted.wait(), 10)
        except asyncio.TimeoutError:
            pass  # no binding took the key: it has no key-to-screen figure
        self._painted = None

    def reset(self) -> None:
        self.press, self.screen, self.handler, self.by_key, self.screen_by_key = [], [], [], {}, {}

    def per_key(self) -> dict[str, float]:
        """Median ms per key until ``pilot.press`` returned (which action costs what)."""
        return {k: round(pct(v, 0.5) * 1000, 1) for k, v in self.by_key.items()}

    def per_key_screen(self) -> dict[str, float]:
        """Median key-to-screen ms per key."""
        return {k: round(pct(v, 0.5) * 1000, 1) for k, v in self.screen_by_key.items()}

    def p95_key_screen(self) -> dict[str, float]:
        return {k: round(pct(v, 0.95) * 1000, 1) for k, v in self.screen_by_key.items()}


KEY_CYCLE = ("m", "m", "2", "down", "down", "up", "3", "m")


async def drive_keys(pilot: Any, timer: KeyTimer, until: Any, interval: float = 0.2, min_presses: int = 0,
                     samples: list[tuple[float, int]] | None = None) -> None:
    i = 0
    while not until() or i < min_presses:
        await timer.key(pilot, KEY_CYCLE[i % len(KEY_CYCLE)])
        i += 1
        if samples is not None:
            samples.append((time.perf_counter(), rss()))
        await pilot.pause(interval)


async def measure_streaming(root: Path, n_runs: int = 10, rate: float = 20.0, minutes: float = 10.0, speed: float = 0.0,
                            baseline_presses: int = 24, timeout: float = 900.0) -> dict[str, Any]:
    """10 runs streaming into one console; input latency and memory while they stream."""
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.monitor import MonitorScreen
    from dpo_tui.ui.screens.runs import RunsScreen

    n_events = int(rate * minutes * 60)
    n_logs = count_logs(n_events)
    ids = prepare_streaming_runs(root, n_runs)
    app = DpoTuiApp(make_services(root), initial_mode="runs")
    result: dict[str, Any] = {"runs": n_runs, "rate_per_run": rate, "simulated_minutes": minutes, "events_per_run": n_events,
                              "events_total": n_events * n_runs}
    async with app.run_test(size=(100, 30)) as pilot:
        runs_screen = app.screen
        assert isinstance(runs_screen, RunsScreen)
        await wait_until(pilot, lambda: runs_screen.listed and len(runs_screen.summaries) == n_runs, 30, "the runs list")
        app.open_monitor(ids[0])
        await pilot.pause()
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen)
        await wait_until(pilot, lambda: monitor.loaded, 30, "the monitor")
        timer = KeyTimer(app)
        timer.watch_monitor(monitor)
        # Baseline: the same keys with nothing streaming.
        await drive_keys(pilot, timer, lambda: True, min_presses=baseline_presses)
        result["latency_idle_press"] = summary(timer.press)
        result["latency_idle_handler"] = summary(timer.handler)
        result["latency_idle_by_key_p50_ms"] = timer.per_key()
        result["latency_idle_screen"] = summary(timer.screen)
        result["latency_idle_screen_by_key_p50_ms"] = timer.per_key_screen()
        result["latency_idle_screen_by_key_p95_ms"] = timer.p95_key_screen()
        result["latency_idle_screen_raw"] = {k: list(v) for k, v in timer.screen_by_key.items()}
        timer.reset()
        if app.current_mode != "monitor":
            await pilot.press("3")
        rss_before = rss()
        traced_before = traced_now()
        samples: list[tuple[float, int]] = [(time.perf_counter(), rss_before)]
        writer = start_writer(root, ids, n_events, rate, speed)
        started = time.perf_counter()
        try:
            await drive_keys(pilot, timer, lambda: writer.poll() is not None or time.perf_counter() - started > timeout, samples=samples)
        finally:
            if writer.poll() is None:
                writer.kill()
            writer.wait()
        result["writer_seconds"] = round(time.perf_counter() - started, 2)
        result["writer_exit"] = writer.returncode
        result["events_per_second_written"] = round(n_events * n_runs / max(1e-9, result["writer_seconds"]), 1)
        # Everything arrives: the monitor folds every event of its run, the runs list shows every run finished.
        if app.current_mode != "monitor":
            await pilot.press("3")
        catch_up = await wait_until(pilot, lambda: monitor.history.terminal is not None, 60, "the monitor to fold every event")
        result["monitor_catch_up_s"] = round(catch_up, 3)
        result["monitor_events"] = monitor.history.event_count
        result["monitor_log_points"] = len(monitor.history.series.get("loss", []))
        result["monitor_bad_lines"] = monitor.reader.bad_lines if monitor.reader else None
        result["monitor_history_mb"] = round(history_bytes(monitor.history) / 2**20, 1)
        await pilot.press("2")
        runs_screen.refresh_runs()
        await wait_until(pilot, lambda: all(s.state == "finished" and s.step == n_logs for s in runs_screen.summaries.values())
                         and len(runs_screen.summaries) == n_runs, 30, "the runs list to show every run finished")
        rss_after = rss()
        traced_after = traced_now()
    if traced_before is not None and traced_after is not None:
        result["live_python_growth_mb"] = round((traced_after - traced_before) / 2**20, 1)
    result["expected_log_points"] = n_logs
    result["latency_streaming_press"] = summary(timer.press)
    result["latency_streaming_handler"] = summary(timer.handler)
    result["latency_streaming_by_key_p50_ms"] = timer.per_key()
    result["latency_streaming_screen"] = summary(timer.screen)
    result["latency_streaming_screen_by_key_p50_ms"] = timer.per_key_screen()
    result["latency_streaming_screen_by_key_p95_ms"] = timer.p95_key_screen()
    result["latency_streaming_screen_raw"] = {k: list(v) for k, v in timer.screen_by_key.items()}
    peak = max(v for _, v in samples)
    half = samples[len(samples) // 2][1] if len(samples) > 2 else rss_before
    result["rss_before_mb"] = round(rss_before / 2**20, 1)
    result["rss_half_mb"] = round(half / 2**20, 1)
    result["rss_after_mb"] = round(rss_after / 2**20, 1)
    result["rss_peak_mb"] = round(peak / 2**20, 1)
    result["rss_growth_mb"] = round((rss_after - rss_before) / 2**20, 1)
    result["rss_growth_second_half_mb"] = round((rss_after - half) / 2**20, 1)
    return result


def plain_listing(root: Path) -> float:
    """Baseline: read every run's status.json and config.json with json.loads (what any listing must read)."""
    started = time.perf_counter()
    for child in sorted(root.iterdir(), reverse=True):
        for name in ("status.json", "config.json"):
            json.loads((child / name).read_text())
    return time.perf_counter() - started


async def _list_and_press(root: Path, n: int, presses: int, refresh: float) -> dict[str, Any]:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.runs import RunsScreen

    app = DpoTuiApp(make_services(root, runs_refresh_interval=refresh), initial_mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one("#runs-table")
        first_paint = await wait_until(pilot, lambda: table.row_count == n, 60, "the run ids")
        listed = await wait_until(pilot, lambda: screen.listed and len(screen.summaries) == n, 120, "the run states") + first_paint
        keys: list[float] = []
        for i in range(presses):
            t = time.perf_counter()
            await pilot.press("down" if i % 4 != 3 else "up")
            keys.append(time.perf_counter() - t)
            await pilot.pause(0.1)
        # One re-list of every run, timed on the UI thread (the table is cleared and refilled).
        t = time.perf_counter()
        screen._runs_listed(RunsScreen.RunsListed(list(screen.summaries.values())))
        rebuild = time.perf_counter() - t
    return {"ids_painted_s": round(first_paint, 3), "listed_s": round(listed, 3), "keys": summary(keys),
            "table_rebuild_ms": round(rebuild * 1000, 1)}


async def measure_many_runs(root: Path, n: int = 1000, presses: int = 20) -> dict[str, Any]:
    """The runs overview over ``n`` runs: time to list them, and keys with the periodic re-list (2 s) on and off."""
    write_many_runs(root, n)
    baseline = plain_listing(root)
    live = await _list_and_press(root, n, presses, refresh=2.0)
    still = await _list_and_press(root, n, presses, refresh=0.0)
    return {"runs": n, **live, "baseline_json_loads_s": round(baseline, 3),
            "listed_vs_baseline": round(live["listed_s"] / baseline, 1) if baseline else None, "keys_no_refresh": still["keys"]}


def plain_fold(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            json.loads(line)
    return time.perf_counter() - started


async def measure_big_run(root: Path, n_events: int = 100_000) -> dict[str, Any]:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.monitor import MonitorScreen
    from dpo_tui.ui.widgets.metric_chart import MetricChart

    path = write_big_run(root, n_events)
    baseline = plain_fold(path / "events.jsonl")
    drawn: dict[str, float] = {}
    original = MetricChart.render

    def render(self: MetricChart) -> Any:
        out = original(self)
        if self.id == "chart-loss" and self.series and self.series[0].points and "t" not in drawn:
            drawn["t"] = time.perf_counter()
        return out

    with patch.object(MetricChart, "render", render):
        app = DpoTuiApp(make_services(root), initial_mode="runs")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            started = time.perf_counter()
            app.open_monitor(path.name)
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, MonitorScreen)
            await wait_until(pilot, lambda: "t" in drawn, 60, "the first chart")
            opened = drawn["t"] - started
            first_points = len(screen.history.series.get("loss", []))
            # A long log paints a thinned fold first; the exact one (every step) follows.
            await wait_until(pilot, lambda: screen.loaded, 60, "the full history")
            full = time.perf_counter() - started
            events = screen.history.event_count
            points = len(screen.history.series.get("loss", []))
            load_cpu = screen.load_seconds
    return {"events": events, "loss_points": points, "first_chart_loss_points": first_points,
            "open_to_first_chart_s": round(opened, 3), "open_to_full_history_s": round(full, 3), "fold_cpu_s": round(load_cpu or 0, 3),
            "file_mb": round((path / "events.jsonl").stat().st_size / 2**20, 1), "baseline_json_loads_s": round(baseline, 3),
            "open_vs_baseline": round(opened / baseline, 2) if baseline else None,
            "full_vs_baseline": round(full / baseline, 2) if baseline else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second per run (simulated)")
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of streaming")
    parser.add_argument("--speed", type=float, default=0.0, help="pace the writer at this multiple of real time (0 = as fast as possible)")
    parser.add_argument("--many", type=int, default=1000, help="runs for the runs-list check")
    parser.add_argument("--big", type=int, default=100_000, help="events in the big run")
    parser.add_argument("--only", choices=("streaming", "many", "big"), action="append")
    parser.add_argument("--trace", action="store_true", help="also measure the live Python heap with tracemalloc (slower)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-ids", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer_main(args.writer, args.run_ids.split(","), args.events, args.rate, args.speed)
        return 0
    only = set(args.only or ("streaming", "many", "big"))
    if args.trace:
        import tracemalloc

        tracemalloc.start()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dpo-tui-load-") as tmp:
        # Streaming first: its RSS figures are only meaningful in a process that has not yet grown its heap.
        if "streaming" in only:
            results["streaming"] = asyncio.run(measure_streaming(Path(tmp) / "stream", args.runs, args.rate, args.minutes, args.speed))
        if "big" in only:
            results["big_run"] = asyncio.run(measure_big_run(Path(tmp) / "big", args.big))
        if "many" in only:
            results["many_runs"] = asyncio.run(measure_many_runs(Path(tmp) / "many", args.many))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if "big_run" in results:
        b = results["big_run"]
        print(f"monitor opens a {b['events']:,}-event run ({b['file_mb']} MB): first chart after {b['open_to_first_chart_s']:.2f} s "
              f"({b['first_chart_loss_points']:,} loss points), every step after {b['open_to_full_history_s']:.2f} s "
              f"(fold {b['fold_cpu_s']:.2f} s CPU); plain json.loads pass {b['baseline_json_loads_s']:.2f} s; "
              f"ratio {b['open_vs_baseline']} / {b['full_vs_baseline']}  [budget: first chart < 2 s]")
    if "many_runs" in results:
        m = results["many_runs"]
        print(f"runs overview with {m['runs']:,} runs: ids painted {m['ids_painted_s']:.2f} s, states listed {m['listed_s']:.2f} s; "
              f"plain json.loads of status+config {m['baseline_json_loads_s']:.2f} s; ratio {m['listed_vs_baseline']}; "
              f"keys p50 {m['keys']['p50_ms']} ms p95 {m['keys']['p95_ms']} ms with the 2 s re-list, p50 {m['keys_no_refresh']['p50_ms']} ms "
              f"p95 {m['keys_no_refresh']['p95_ms']} ms without it; one table rebuild {m['table_rebuild_ms']} ms on the UI thread")
    if "streaming" in results:
        s = results["streaming"]
        print(f"{s['runs']} runs × {s['rate_per_run']:g} events/s × {s['simulated_minutes']:g} simulated min = {s['events_total']:,} events, "
              f"written in {s['writer_seconds']} s ({s['events_per_second_written']:,} events/s, fsync each)")
        for label, key in (("idle", "latency_idle"), ("streaming", "latency_streaming")):
            p, h, k = s[f"{key}_press"], s[f"{key}_handler"], s[f"{key}_screen"]
            print(f"  key-to-screen {label:<9}: p50 {k['p50_ms']} ms p95 {k['p95_ms']} ms max {k['max_ms']} ms (n={k['n']})")
            print(f"  input latency {label:<9}: key handled p50 {p['p50_ms']} ms p95 {p['p95_ms']} ms max {p['max_ms']} ms (n={p['n']}); "
                  f"handler start p50 {h['p50_ms']} ms p95 {h['p95_ms']} ms")
        print(f"  p50 by key (idle / streaming): {s['latency_idle_by_key_p50_ms']} / {s['latency_streaming_by_key_p50_ms']}")
        ratio = s["latency_streaming_press"]["p95_ms"] / max(0.1, s["latency_idle_press"]["p95_ms"])
        print(f"  p95 streaming / idle: {ratio:.2f}")
        print(f"  RSS: before {s['rss_before_mb']} MB, half-way {s['rss_half_mb']} MB, after {s['rss_after_mb']} MB, peak {s['rss_peak_mb']} MB "
              f"(growth {s['rss_growth_mb']} MB, second half {s['rss_growth_second_half_mb']} MB); the monitored run's folded "
              f"history holds {s['monitor_history_mb']} MB" + (f"; live Python heap grew {s['live_python_growth_mb']} MB"
                                                              if "live_python_growth_mb" in s else ""))
        print(f"  monitor: {s['monitor_log_points']}/{s['expected_log_points']} log points, {s['monitor_events']} events, "
              f"caught up {s['monitor_catch_up_s']} s after the writer ended; runs list: every run finished at its last step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
