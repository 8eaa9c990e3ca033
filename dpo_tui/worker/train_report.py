"""How the trainer talks to the console, and hears a stop: events, status.json, the heartbeat, signals.

Everything goes through the run folder: :class:`Reporter` writes ``events.jsonl`` and ``status.json``
(rank 0 only), :class:`Heartbeat` keeps the heartbeat fresh, and the TrainerCallback from
:func:`build_callbacks` streams each logged step, guards against non-finite metrics, stops at a step
boundary after a signal and paces checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..core import events as ev
from ..core.config import RunConfig
from ..core.fsutil import atomic_write_json, follow_umask, fsync_dir
from ..core.runs import EXIT_FAILED, EXIT_STOPPED, Run
from ..core.runs.folder import CHECKPOINT_MANIFEST

# How often the heartbeat (status.json) and resource events are written.
HEARTBEAT_S = float(os.environ.get("DPO_TUI_HEARTBEAT_S", "5"))
# Metrics whose non-finite value means the run is broken.
GUARDED_PREFIXES = ("loss", "grad_norm", "rewards/", "logps/", "logits/")


class StopRequested:
    """Set from signal handlers, read by the training callback.

    The handler only assigns attributes. It must take no lock (``threading.Event.set`` takes one): a
    second signal can interrupt the first handler inside the lock, and the nested handler then waits
    forever for a lock its own thread holds, so the trainer hangs until a stop escalates to SIGKILL.
    """

    def __init__(self) -> None:
        self._requested = False
        self.signal_name = ""

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.signal_name = signal.Signals(signum).name
            self._requested = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, handler)
        # The run must outlive the terminal that started it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def request(self) -> None:
        """Another rank asked to stop (see ``stop_agreed``)."""
        self._requested = True

    @property
    def requested(self) -> bool:
        return self._requested



def process_rank() -> tuple[int, int]:
    """(rank, world size) under ``accelerate launch``/torchrun; (0, 1) for a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class Reporter:
    """Owns the run folder's writes for this attempt: events, status, heartbeat.

    Only rank 0 writes; on other ranks every method is a no-op, so there is one writer per run.
    """

    def __init__(self, run: Run, attempt: int) -> None:
        self.run = run
        self.attempt = attempt
        self.rank, self.world_size = process_rank()
        self.writer = ev.EventWriter(run.events_path, attempt=attempt) if self.rank == 0 else None
        self._lock = threading.Lock()
        self.step = 0
        self.max_steps: int | None = None
        self.phase = "starting"
        self.state = "starting"
        self.identity: dict[str, Any] = {}
        """Who runs this attempt (pids with start times, host): in every status write, so a status.json
        deleted mid-run comes back with them and liveness checks keep working."""

    def emit(self, type_: str, **fields: Any) -> None:
        if self.writer is None:
            return
        with self._lock:
            self.writer.emit(type_, **fields)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def status(self, **fields: Any) -> None:
        if self.rank != 0:
            return
        with self._lock:
            if "state" in fields:
                self.state = fields["state"]
            elif not self.run.status_file_sound():
                fields["state"] = self.state  # rebuilt after a deletion or damage (a readable file keeps e.g. "stopping")
            for key, value in self.identity.items():
                fields.setdefault(key, value)
            fields.setdefault("heartbeat", time.time())
            fields.setdefault("phase", self.phase)
            fields.setdefault("step", self.step)
            if self.max_steps is not None:
                fields.setdefault("max_steps", self.max_steps)
            try:
                self.run.update_status(rebuild_unreadable=True, **fields)
            except OSError as exc:  # a full disk must not kill training; the next beat retries
                print(f"dpo-tui: cannot write status.json: {exc}", file=sys.stderr)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.status()


def resource_snapshot() -> dict[str, Any]:
    import psutil
    import torch

    info: dict[str, Any] = {"rss": psutil.Process().memory_info().rss, "cpu_percent": psutil.cpu_percent(interval=None)}
    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            devices.append(
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "allocated": torch.cuda.memory_allocated(i),
                    "reserved": torch.cuda.memory_reserved(i),
                    "peak": torch.cuda.max_memory_reserved(i),
                    "used": total - free,
                    "total": total,
                }
            )
        try:
            devices_util = [torch.cuda.utilization(d["index"]) for d in devices]
            for d, u in zip(devices, devices_util, strict=False):
                d["util"] = u
        except Exception:  # noqa: BLE001 - needs pynvml; utilisation is optional
            pass
    info["devices"] = devices
    return info


class Heartbeat(threading.Thread):
    """Rewrites the heartbeat and emits ``resource`` events every few seconds, so a hang is visible."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.reporter = reporter
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                self.reporter.status()
                self.reporter.emit(ev.RESOURCE, step=self.reporter.step, **resource_snapshot())
            except Exception as exc:  # noqa: BLE001 - never let monitoring kill training
                print(f"dpo-tui: heartbeat failed: {exc}", file=sys.stderr)


def stop_agreed(stop: StopRequested, world_size: int) -> bool:
    """Whether any rank was asked to stop. Every rank must stop at the same step boundary, or the
    ones still training hang in their next collective, so the flag is all-reduced (MAX) each step."""
    if world_size <= 1:
        return stop.requested
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return stop.requested
    flag = torch.tensor([1 if stop.requested else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and not stop.requested:
        stop.request()
    return bool(flag.item())


# What one trainer.log line shows per logged step, in this order: (metric, label, format).
LOG_LINE_METRICS = (
    ("loss", "loss", ".4g"), ("rewards/margins", "margin", ".4g"), ("rewards/accuracies", "acc", ".2f"),
    ("rewards/chosen", "chosen", ".4g"), ("rewards/rejected", "rejected", ".4g"), ("grad_norm", "grad", ".4g"),
    ("learning_rate", "lr", ".2e"),
)


def log_line(step: int, max_steps: int | None, logs: dict[str, Any]) -> str:
    """One readable trainer.log line for a logged step (events.jsonl keeps every metric).

    Replaces transformers' PrinterCallback, which printed the whole metrics dict as a Python repr:
    unreadable in ``tail -f trainer.log`` and in the monitor's log pane.
    """
    if "train_runtime" in logs:
        return (f"done: {logs.get('train_runtime', 0):.1f} s, {logs.get('train_steps_per_second', 0):.2f} steps/s, "
                f"mean train loss {logs.get('train_loss', float('nan')):.4f}")
    prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
    parts = [f"step {step}/{max_steps}" if max_steps else f"step {step}"]
    if prefix:
        parts.append("eval")
    for key, label, spec in LOG_LINE_METRICS:
        value = logs.get(prefix + key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:{spec}}")
    return "  ".join(parts)


def build_callbacks(reporter: Reporter, stop: StopRequested, config: RunConfig) -> list[Any]:
    """The TrainerCallbacks that stream events, guard against NaN, stop gracefully and pace checkpoints."""
    from transformers import TrainerCallback

    # Fault injection for the test suite (documented in docs/troubleshooting.md, off by default).
    fault_nan_step = int(os.environ.get("DPO_TUI_FAULT_NAN_AT_STEP", "0") or 0)
    fault_step_delay = float(os.environ.get("DPO_TUI_FAULT_STEP_DELAY", "0") or 0)
    fault_hold_step = int(os.environ.get("DPO_TUI_FAULT_HOLD_AT_STEP", "0") or 0)
    fault_gate = Path(os.environ["DPO_TUI_FAULT_GATE"]) if os.environ.get("DPO_TUI_FAULT_GATE") else None

    class ConsoleCallback(TrainerCallback):
        def __init__(self) -> None:
            self.save_every = 1
            self.last_save_t = time.time()
            self.nan_keys: list[str] = []
            self.stopped_by_signal = False

        def on_train_begin(self, args, state, control, **kwargs):
            reporter.max_steps = state.max_steps
            self.save_every = max(1, math.ceil(state.max_steps * config.save_fraction))
            self.last_save_t = time.time()
            reporter.phase = "training"
            reporter.status(state="running", max_steps=state.max_steps, step=state.global_step)
            if stop.requested:
                control.should_training_stop = True

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            # Fault injection for the test suite: poison one trainable weight so the next loss is NaN.
            if fault_nan_step and state.global_step + 1 == fault_nan_step and model is not None:
                import torch

                with torch.no_grad():
                    for param in model.parameters():
                        if param.requires_grad:
                            param.fill_(float("nan"))
                            break

        def on_step_end(self, args, state, control, **kwargs):
            reporter.step = state.global_step
            if fault_gate and state.global_step == fault_hold_step and state.is_world_process_zero:
                # Fault injection for the test suite: hold after step N (before its log and any save) until
                # the test opens the gate, so a fault lands at a known step. A stop also ends the hold:
                # the signal handler only sets a flag, and the stop check below must still see it.
                # Rank 0 alone holds; the other ranks wait for it in the next collective.
                Path(f"{fault_gate}.reached").write_text(f"{state.global_step}\n")
                while not fault_gate.exists() and not stop.requested:
                    time.sleep(0.02)
            if fault_step_delay:
                time.sleep(fault_step_delay)
            if stop_agreed(stop, reporter.world_size) and not self.nan_keys:
                self.stopped_by_signal = True
                control.should_save = True
                control.should_training_stop = True
                return
            due_by_steps = state.global_step % self.save_every == 0 and state.global_step < state.max_steps
            due_by_time = config.save_minutes > 0 and time.time() - self.last_save_t > config.save_minutes * 60
            if (due_by_steps or due_by_time) and state.global_step < state.max_steps:
                control.should_save = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            logs = dict(logs)  # other callbacks may pop keys from the shared dict
            print(log_line(state.global_step, state.max_steps, logs), flush=True)
            if "train_runtime" in logs:  # the end-of-training summary
                reporter.emit(ev.LOG, step=state.global_step, epoch=state.epoch, metrics=logs, summary=True)
                return
            reporter.emit(ev.LOG, step=state.global_step, epoch=round(state.epoch or 0.0, 4), metrics=logs)
            bad = [
                k for k, v in logs.items()
                if k.startswith(GUARDED_PREFIXES) and isinstance(v, (int, float)) and not math.isfinite(v)
            ]
            if bad:
                self.nan_keys = bad
                control.should_training_stop = True
                control.should_save = False  # never save a poisoned model over the good checkpoints

        def on_save(self, args, state, control, **kwargs):
            self.last_save_t = time.time()
            if not state.is_world_process_zero:
                return
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            follow_umask(path)  # the Trainer's safetensors files are 0600; the run folder follows the umask
            (path / "COMPLETE").write_text(f"{state.global_step}\n")
            write_checkpoint_manifest(path)
            fsync_dir(path)
            reporter.emit(ev.CHECKPOINT, step=state.global_step, path=str(path.relative_to(reporter.run.path)))
            reporter.status()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if state.is_world_process_zero and metrics:
                reporter.emit(ev.EVAL, step=state.global_step, metrics=dict(metrics))
            if stop.requested:
                control.should_training_stop = True

    return [ConsoleCallback()]


def write_checkpoint_manifest(path: Path) -> None:
    """Record every file's size once the Trainer's save is done, so a checkpoint truncated later (a full
    disk, a copy cut short) reads as incomplete and resume falls back to an older one. Written last."""
    files = {
        str(f.relative_to(path)): f.stat().st_size
        for f in sorted(path.rglob("*")) if f.is_file() and not f.is_symlink() and f.name != CHECKPOINT_MANIFEST
    }
    atomic_write_json(path / CHECKPOINT_MANIFEST, {"version": 1, "files": files})


def finish_stopped(reporter: Reporter, checkpoint: Path | None) -> int:
    rel = str(checkpoint.relative_to(reporter.run.path)) if checkpoint else None
    hint = f"`dpo-tui resume {reporter.run.id}` continues from {checkpoint.name}" if checkpoint else "stopped before the first step"
    reporter.emit(ev.STOPPED, step=reporter.step, checkpoint=rel, reason="signal", hint=hint)
    reporter.status(state="stopped", exit_code=EXIT_STOPPED, ended_at=time.time(), phase="done", hint=hint, kind=None)
    return EXIT_STOPPED


def finish_failed(reporter: Reporter, kind: str, message: str, hint: str) -> int:
    with contextlib.suppress(OSError):  # trainer.log on a full disk
        print(f"dpo-tui: run failed ({kind}): {message}", file=sys.stderr)
    try:
        reporter.emit(ev.FAILED, step=reporter.step, kind=kind, message=message, hint=hint, phase=reporter.phase)
    except OSError:
        pass  # disk full: the supervisor records the outcome in status.json
    reporter.status(state="failed", exit_code=EXIT_FAILED, ended_at=time.time(), kind=kind, message=message, hint=hint, phase="done")
    return EXIT_FAILED
