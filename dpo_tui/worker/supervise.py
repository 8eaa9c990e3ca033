"""The supervisor: ``python -m dpo_tui.worker.supervise RUN_DIR [--resume-from CHECKPOINT]``.

Started detached by ``core.runs.launch`` (new session, stdin /dev/null, output to a file), so it
and the trainer survive logout. It

1. waits its turn for the run's devices (one trainer per GPU, or one on CPU): runs queue in the
   order they were created, and a lock file per device, held with ``flock``, guards the device.
   Locks die with their holder, so a crashed run never leaves a device blocked;
2. starts the trainer as its child in the same process group (so Stop's SIGTERM to the group
   reaches both), with output appended to ``trainer.log``;
3. records the exit code and a terminal status even when the trainer is SIGKILLed, e.g. by the
   host's OOM killer.

It imports no ML library: it stays small while the trainer holds the memory.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..core import events as ev
from ..core.config import RunConfig
from ..core.errors import UserError, first_line
from ..core.fsutil import atomic_write_json
from ..core.locks import locks_dir, open_lock, read_holder, write_holder
from ..core.preflight import visible_gpu_ids
from ..core.run_states import TERMINAL_STATES
from ..core.runs import (
    EXIT_FAILED,
    EXIT_FINISHED,
    EXIT_STOPPED,
    LOCKS_DIR,
    SUPERVISOR_LOG,
    Run,
    host_name,
    list_run_dirs,
    process_start_time,
)

POLL_S = 0.5
ACCELERATE_CONFIG = "accelerate_config.json"


def accelerate_config(config: RunConfig, keys: list[str]) -> dict[str, Any]:
    """The ``accelerate launch`` config for a multi-process run (DDP, DeepSpeed ZeRO or FSDP).

    Without GPUs the same DDP path runs over gloo on CPU processes (how the tests exercise it).
    """
    on_gpu = any(k.startswith("gpu") for k in keys)
    precision = {"bf16": "bf16", "fp16": "fp16"}.get(config.precision, "no")
    if config.precision == "auto" and on_gpu:
        precision = "bf16"
    out: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": config.nproc,
        "mixed_precision": precision if on_gpu else "no",
        "use_cpu": False,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "dynamo_config": {},
    }
    if on_gpu:
        out["gpu_ids"] = ",".join(str(i) for i in range(len(keys)))
    if config.strategy.startswith("zero"):
        stage = 2 if config.strategy == "zero2" else 3
        offload = "cpu" if config.strategy == "zero3-offload" else "none"
        out["distributed_type"] = "DEEPSPEED"
        out["deepspeed_config"] = {
            "zero_stage": stage,
            "offload_optimizer_device": offload,
            "offload_param_device": offload,
            "zero3_init_flag": stage == 3,
            "zero3_save_16bit_model": stage == 3,
            "gradient_accumulation_steps": config.gradient_accumulation,
            "gradient_clipping": config.max_grad_norm,
        }
    elif config.strategy == "fsdp":
        out["distributed_type"] = "FSDP"
        out["fsdp_config"] = {
            "fsdp_version": 1,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_offload_params": False,
            "fsdp_use_orig_params": True,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
        }
    return out


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def device_keys(gpus: list[int], nproc: int) -> list[str]:
    """The lock names a run needs: its GPUs, or ``cpu``."""
    if gpus:
        return [f"gpu{g}" for g in sorted(gpus)]
    visible = visible_gpu_ids()  # NVML indices CUDA_VISIBLE_DEVICES allows: the first nproc of them
    if visible:
        return [f"gpu{i}" for i in visible[:nproc]]
    return ["cpu"]


class DeviceLocks:
    """flock-held lock files under ``<runs root>/.locks/``; released by closing (or by dying).

    The trainer inherits the locked fds (``fds``): a flock belongs to the open file description, so
    the device stays locked while the trainer lives even if this supervisor is SIGKILLed.
    """

    def __init__(self, root: Path, keys: list[str]) -> None:
        self.root = root
        self.keys = keys
        self.fds: list[int] = []

    def try_acquire(self, run_id: str) -> bool:
        folder = locks_dir(self.root)
        for key in self.keys:  # sorted keys: no two supervisors deadlock on each other
            fd = open_lock(folder / f"{key}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.release()
                return False
            self.fds.append(fd)
            with contextlib.suppress(OSError):  # informational only; a full disk must not lose the lock
                write_holder(fd, f"{run_id} {os.getpid()}\n")
        return True

    def release(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def holder(root: Path, key: str) -> str | None:
    """The run id written into a lock file (informational; the flock is what counts)."""
    return read_holder(root / LOCKS_DIR / f"{key}.lock")


def queue_ahead(run: Run, keys: list[str]) -> list[Run]:
    """Queued runs created before this one that want one of the same devices (FIFO order)."""
    mine = run.writer_status()
    ahead = []
    for path in list_run_dirs(run.path.parent):
        if path == run.path:
            continue
        other = Run(path)
        try:
            status = other.status()
        except Exception:  # noqa: BLE001 - an unreadable neighbour must not block the queue
            continue
        if status.state != "queued" or not status.supervisor_pid:
            continue
        # Devices are recorded once the other supervisor is up; until then assume it wants ours, so a run
        # launched a moment later can never overtake it (a ladder starts its supervisors back to back).
        wants_ours = not status.devices or bool(set(status.devices) & set(keys))
        if wants_ours and (status.created_at, other.id) < (mine.created_at, run.id):
            ahead.append(other)
    return ahead


class Supervisor:
    def __init__(self, run: Run, resume_from: Path | None) -> None:
        self.run = run
        self.resume_from = resume_from
        self.child: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.identity: dict = {}
        """Who supervises this attempt (pid with start time, group, host, devices), written into status.json."""

    def _on_term(self, signum: int, _frame: object) -> None:
        # While queued, Stop cancels the run. While training, the trainer (same group) got the
        # same signal and stops gracefully; the supervisor waits to record the outcome.
        if self.child is None:
            self.cancelled = True

    def install_signals(self) -> None:
        """Called before the supervisor reports its pid, so a Stop that reaches it at once is heard."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)

    def wait_turn(self, keys: list[str], locks: DeviceLocks) -> bool:
        announced = None
        while not self.cancelled:
            ahead = queue_ahead(self.run, keys)
            if not ahead and locks.try_acquire(self.run.id):
                return True
            busy_by = next((h for h in (holder(self.run.path.parent, k) for k in keys) if h and h != self.run.id), None)
            phase = f"queued: position {len(ahead) + 1}" + (f", {'/'.join(keys)} busy with {busy_by}" if busy_by else "")
            if not self.run.status_file_sound():
                # Deleted or damaged while queued (by hand, or a cleanup script): write it back with this process's
                # identity, or readers would take the pid-less file for a run nobody launched.
                resume_from = str(self.resume_from) if self.resume_from is not None else None
                self.run.update_status(rebuild_unreadable=True, state="queued", phase=phase, resume_from=resume_from, kind=None, hint=None,
                                       message=None, **self.identity)
                announced = phase
            elif phase != announced:
                self.run.update_status(rebuild_unreadable=True, phase=phase)
                announced = phase
            time.sleep(POLL_S)
        return False

    def trainer_command(self, keys: list[str]) -> list[str]:
        """One process: the trainer itself. Several: ``accelerate launch`` with a config generated into the run."""
        args = [str(self.run.path)] + (["--resume-from", str(self.resume_from)] if self.resume_from is not None else [])
        config = self.run.config()
        if config.nproc == 1 and config.strategy == "ddp":
            return [sys.executable, "-m", "dpo_tui.worker.train", *args]
        # Several processes, or one under DeepSpeed/FSDP (ZeRO-3 offload on one GPU fits models that
        # do not fit otherwise): accelerate sets up the plugin.
        launch_config = self.run.path / ACCELERATE_CONFIG
        settings = accelerate_config(config, keys)
        # Each run its own rendezvous port: two runs on different GPUs would both take accelerate's 29500.
        settings["main_process_port"] = free_port()
        atomic_write_json(launch_config, settings)
        return [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config),
            "-m", "dpo_tui.worker.train", *args,
        ]

    def run_trainer(self, keys: list[str], lock_fds: tuple[int, ...] = ()) -> int:
        env = dict(os.environ)
        gpu_ids = [k[3:] for k in keys if k.startswith("gpu")]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids) if gpu_ids else ""
        # The ids are NVML indices (PCI bus order); CUDA's default order (fastest first) can differ on a
        # box with mixed GPU models, and the trainer would land on a card the operator did not pick.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.run.log_path, "ab") as log:
            log.write(f"\n=== dpo-tui trainer start {time.strftime('%Y-%m-%d %H:%M:%S')} on {host_name()} ({'/'.join(keys)}) ===\n".encode())
            log.flush()
            self.child = subprocess.Popen(
                self.trainer_command(keys), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                close_fds=True, pass_fds=lock_fds, env=env, cwd=str(self.run.path),
            )
        if self.cancelled:  # the Stop reached this group just before the trainer joined it: pass it on
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGTERM)
        # Record the trainer pid at once, so a Stop right after launch can reach it.
        self.run.update_status(rebuild_unreadable=True, pid=self.child.pid, pid_start=process_start_time(self.child.pid))
        while True:
            try:
                return self.child.wait()
            except InterruptedError:
                continue

    def record_outcome(self, rc: int) -> None:
        """If the trainer died without its terminal event, write one, so a run never silently disappears."""
        status = self.run.writer_status()
        if status.supervisor_pid not in (None, os.getpid()):
            return  # the run was resumed under a new supervisor meanwhile: its status is no longer ours
        if status.state in TERMINAL_STATES and status.attempt and status.exit_code is not None:
            return
        if rc in (EXIT_FINISHED, EXIT_STOPPED, EXIT_FAILED) and status.state in TERMINAL_STATES:
            return
        terminal = self._terminal_event(status.attempt)
        if terminal is not None:
            # The trainer's terminal event reached the log but its status write did not (a full disk): take
            # the outcome from the event instead of adding a second one with the stale step of status.json.
            self._status_from_event(terminal, rc)
            return
        if rc == -signal.SIGTERM and (status.state == "stopping" or self.cancelled):
            # A Stop that landed before the trainer could handle it: still a stop, not a crash.
            hint = "stopped before the first step"
            ckpt = self.run.newest_complete_checkpoint()
            if ckpt:
                hint = f"`dpo-tui resume {self.run.id}` continues from {ckpt.path.name}"
            with contextlib.suppress(OSError), ev.EventWriter(self.run.events_path, attempt=max(1, status.attempt)) as writer:
                writer.emit(ev.STOPPED, step=status.step, reason="signal", hint=hint)
            self.run.update_status(rebuild_unreadable=True, state="stopped", exit_code=EXIT_STOPPED, ended_at=time.time(),
                                   phase="done", hint=hint, kind=None, message=None)
            return
        if rc < 0:
            sig = signal.Signals(-rc).name
            kind = "killed"
            message = f"the trainer was killed by {sig}"
            hint = "SIGKILL without a Stop usually means the host OOM killer (check `dmesg`)" if sig == "SIGKILL" else ""
        else:
            kind = "crash"
            message = f"the trainer exited with code {rc} before reporting an outcome"
            hint = f"see {self.run.log_path.name}"
        ckpt = self.run.newest_complete_checkpoint()
        if ckpt:
            hint = (hint + "; " if hint else "") + f"`dpo-tui resume {self.run.id}` continues from {ckpt.path.name}"
        with contextlib.suppress(OSError), ev.EventWriter(self.run.events_path, attempt=max(1, status.attempt)) as writer:
            writer.emit(ev.FAILED, step=status.step, kind=kind, message=message, hint=hint, exit_code=rc)
        status.state = "crashed" if rc < 0 else "failed"
        status.kind, status.message, status.hint = kind, message, hint
        status.exit_code = rc if rc >= 0 else 128 - rc
        status.ended_at = time.time()
        self.run.write_status(status)

    def _terminal_event(self, attempt: int) -> dict[str, Any] | None:
        try:
            events = ev.read_events(self.run.events_path)
        except OSError:
            return None
        for event in reversed(events):
            if ev.event_int(event.get("attempt")) < max(1, attempt):
                return None  # an earlier attempt's outcome is not this one's
            if event.get("type") in ev.TERMINAL_TYPES:
                return event
        return None

    def _status_from_event(self, event: dict[str, Any], rc: int) -> None:
        state = {ev.FINISHED: "finished", ev.STOPPED: "stopped"}.get(event["type"], "failed")
        fields: dict[str, Any] = {"state": state, "phase": "done", "ended_at": time.time(), "exit_code": rc if rc >= 0 else 128 - rc,
                                  "step": ev.event_int(event.get("step"))}
        if state == "failed":
            fields.update(kind=event.get("kind"), message=event.get("message"), hint=event.get("hint"))
        with contextlib.suppress(Exception):
            self.run.update_status(rebuild_unreadable=True, **fields)

    def record_own_failure(self, exc: Exception) -> None:
        """This process failed (not the trainer): make its own cause the run's outcome, never a silent death
        that readers would take for the OOM killer or a reboot."""
        if isinstance(exc, UserError):
            kind, message, hint = "config", exc.summary, exc.hint or f"see {SUPERVISOR_LOG}"
        else:
            kind, message, hint = "crash", f"the supervisor failed: {first_line(exc)}", f"see {SUPERVISOR_LOG}"
        traceback.print_exc()  # the whole story for supervisor.log; the run shows the one line
        with contextlib.suppress(Exception):
            status = self.run.raw_status()
            if status.state in TERMINAL_STATES and status.supervisor_pid not in (None, os.getpid()):
                return  # someone else's attempt
            with ev.EventWriter(self.run.events_path, attempt=max(1, status.attempt)) as writer:
                writer.emit(ev.FAILED, step=status.step, kind=kind, message=message, hint=hint, exit_code=EXIT_FAILED)
        with contextlib.suppress(Exception):
            self.run.update_status(state="failed", kind=kind, message=message, hint=hint, phase="done",
                                   exit_code=EXIT_FAILED, ended_at=time.time())

    def main(self) -> int:
        self.install_signals()
        locks: DeviceLocks | None = None
        try:
            config = self.run.config()
            keys = device_keys(config.gpus, config.nproc)
            self.identity = {"supervisor_pid": os.getpid(), "supervisor_start": process_start_time(os.getpid()),
                             "pgid": os.getpgid(0), "host": host_name(), "devices": keys}
            self.run.update_status(rebuild_unreadable=True, state="queued", **self.identity)
            locks = DeviceLocks(self.run.path.parent, keys)
            if not self.wait_turn(keys, locks) or self.cancelled:
                current = self.run.writer_status()
                with ev.EventWriter(self.run.events_path, attempt=max(1, current.attempt)) as writer:
                    writer.emit(ev.STOPPED, step=current.step, reason="cancelled", hint="cancelled while queued")
                self.run.update_status(rebuild_unreadable=True, state="stopped", kind="cancelled", message="cancelled while queued", ended_at=time.time(), phase="done")
                return 0
            self.run.update_status(rebuild_unreadable=True, state="starting", phase="starting")
            rc = self.run_trainer(keys, tuple(locks.fds))
            self.record_outcome(rc)
            return 0 if rc in (0, 3) else EXIT_FAILED
        except Exception as exc:
            if self.child is not None and self.child.poll() is None:
                raise  # the trainer still runs and will report its own outcome
            self.record_own_failure(exc)
            return EXIT_FAILED
        finally:
            if locks is not None:
                locks.release()


def detach(pid_fd: int) -> None:
    """Fork once more and let the parent exit: whoever launched this reaps it at once (no ``<defunct>``
    left in a long-lived console), and the supervisor is adopted by init. The child's pid goes to ``pid_fd``."""
    pid = os.fork()
    if pid:
        with contextlib.suppress(OSError):
            os.write(pid_fd, f"{pid}\n".encode())
        os._exit(0)
    os.close(pid_fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.supervise")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume-from", type=Path)
    parser.add_argument("--pid-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    supervisor = Supervisor(Run(args.run_dir.resolve()), args.resume_from)
    supervisor.install_signals()  # before the pid is reported: whoever has it may stop this process
    if args.pid_fd is not None:
        detach(args.pid_fd)
    return supervisor.main()


if __name__ == "__main__":
    sys.exit(main())
