"""A run's life: create its folder, launch its detached supervisor, resume, stop, delete.

Blocking (signals, waiting for a supervisor): the console calls these from thread workers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from .. import events as ev
from ..config import RunConfig
from ..errors import UserError
from ..fsutil import atomic_write_text, make_unique_dir
from ..run_states import ACTIVE_STATES, TERMINAL_STATES
from .folder import CONFIG_FILE, SUPERVISOR_LOG, Checkpoint, Run
from .status import RunStatus, host_name, process_alive, process_start_time


def slug(text: str, limit: int = 24) -> str:
    base = Path(text.rstrip("/")).name if "/" not in text or Path(text).exists() else text.split("/")[-1]
    out = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
    return (out or "model")[:limit].strip("-")


def make_run_id(root: Path, config: RunConfig, now: datetime | None = None) -> str:
    """``timestamp-model-bβ[-what differs from the newest run in root][-name]``: five runs in a row are
    told apart by what each changed (``…-b0.1-r16``), not only by their timestamps. ``config`` has its
    paths frozen, so the same file never reads as a change."""
    from ..run_names import run_id_for
    from .listing import list_run_dirs

    previous = None
    try:
        newest = list_run_dirs(root)[:1]
        previous = Run(newest[0]).config() if newest else None
    except (UserError, OSError, ValueError):
        previous = None  # an unreadable newest run only costs the id its tags
    model = "tiny-chat" if config.is_sample() else slug(config.model)
    return run_id_for(config, previous, model, now)


def freeze_paths(config: RunConfig) -> RunConfig:
    """Local model/dataset paths made absolute: the supervisor and trainer run inside the run folder, and
    every later reader (runs, chat, export) in some other directory."""
    updates = {}
    for name in ("model", "dataset"):
        value = getattr(config, name)
        if value != "sample" and Path(value).expanduser().exists():
            updates[name] = str(Path(value).expanduser().resolve())
    return config.model_copy(update=updates) if updates else config


def create_run(root: Path, config: RunConfig, run_id: str | None = None) -> Run:
    """Make the run folder with its frozen config and a ``queued`` status. Never overwrites a run."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise UserError(f"Cannot create the runs root {root}: permission denied", hint="pass --runs-dir to a writable folder") from None
    except OSError as exc:
        raise UserError(f"Cannot create the runs root {root}: {exc.strerror}") from None
    config = freeze_paths(config)
    base = run_id or make_run_id(root, config)
    try:
        candidate = make_unique_dir(root, base)
    except PermissionError:
        raise UserError(f"Cannot write to the runs root {root}: permission denied", hint="pass --runs-dir to a writable folder") from None
    except OSError as exc:
        raise UserError(f"Cannot create a run folder in {root}: {exc.strerror}") from None
    if candidate is None:
        raise UserError(f"Too many runs named {base} in {root}")
    run = Run(candidate)
    try:
        atomic_write_text(run.config_path, config.to_json())
        run.write_status(RunStatus(state="queued", created_at=time.time(), host=host_name()))
    except OSError as exc:
        shutil.rmtree(candidate, ignore_errors=True)
        raise UserError(f"Cannot write the run folder {candidate}: {exc.strerror}", hint="free disk space or choose another --runs-dir") from None
    return run



def launch(run: Run, resume_from: Path | None = None) -> int:
    """Start the run's supervisor detached (new session, stdin /dev/null, output to a file). Returns its pid.

    The supervisor survives the launching terminal hanging up, the UI exiting, and Ctrl-C in it. It
    forks once more and reports the grandchild's pid through a pipe; the short-lived intermediate is
    reaped here, so a long-lived console collects no ``<defunct>`` children.
    """
    from ..locks import locks_dir  # core.locks reads LOCKS_DIR from this package: import it once both exist

    try:
        locks_dir(run.path.parent)  # a broken .locks is the operator's to fix: say so here, not in supervisor.log
    except UserError as exc:
        with contextlib.suppress(OSError):
            run.update_status(state="failed", kind="config", message=exc.summary, hint=exc.hint, phase="done",
                              ended_at=time.time())
        raise
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "dpo_tui.worker.supervise", os.path.abspath(run.path), "--pid-fd", str(write_fd)]
    if resume_from is not None:
        cmd += ["--resume-from", str(resume_from)]
    env = dict(os.environ)
    # Make the package importable for the child even when run from a source checkout.
    pkg_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        with open(run.path / SUPERVISOR_LOG, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=(write_fd,),
                env=env,
                cwd=str(run.path),
            )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        reported = pipe.read().strip()  # EOF once both the intermediate and the supervisor closed the pipe
    proc.wait()
    if not reported.isdigit():
        with contextlib.suppress(OSError):
            run.update_status(state="failed", kind="crash", message="the supervisor did not start", phase="done",
                              hint=f"see {SUPERVISOR_LOG}", ended_at=time.time())
        raise UserError(f"Could not start the supervisor of run {run.id} (exit code {proc.returncode})",
                        hint=f"see {run.path / SUPERVISOR_LOG}")
    pid = int(reported)
    run.update_status(supervisor_pid=pid, supervisor_start=process_start_time(pid), host=host_name())
    return pid


def prepare_resume(run: Run) -> Checkpoint:
    """Check a run can resume and return the checkpoint it will continue from."""
    status = run.status()
    if status.state == "finished":
        raise UserError(f"Run {run.id} already finished; nothing to resume", hint="start a new run, or `dpo-tui train --config` with more steps")
    if status.state in ACTIVE_STATES:
        raise UserError(f"Run {run.id} is {status.state}; stop it before resuming", hint=f"`dpo-tui attach {run.id}` follows it")
    # The previous attempt's supervisor records the outcome just after its trainer exits: let it finish,
    # so the two never write status.json at once.
    deadline = time.time() + 15
    while run.processes_alive(status) and time.time() < deadline:
        time.sleep(0.1)
    if run.processes_alive(status):
        raise UserError(f"Run {run.id} is still shutting down", hint="try again in a few seconds")
    check_resume_devices(run)
    check_resume_inputs(run)
    ckpt = run.newest_complete_checkpoint()
    if ckpt is None:
        broken = [c.path.name + f" ({c.reason})" for c in run.checkpoints() if not c.complete]
        detail = f"; incomplete: {', '.join(broken)}" if broken else ""
        raise UserError(
            f"Run {run.id} has no complete checkpoint to resume from{detail}",
            hint="start it again as a new run with `dpo-tui train --config` using its config.json",
        )
    return ckpt


def check_resume_inputs(run: Run) -> None:
    """The frozen config's local model and dataset must still be there. Checked here, before launching,
    because the trainer's own refusal hints at passing another file, which ``resume`` cannot take."""
    config = run.config()
    for what, value in (("model", config.model), ("dataset", config.dataset)):
        if value != "sample" and os.path.isabs(value) and not os.path.exists(value):
            raise UserError(
                f"Run {run.id} trained on the {what} {value}, which is no longer there",
                hint=f"put it back at that path and resume, or start a new run from the run's settings: "
                f"`dpo-tui train --config {run.config_path} --{what} NEW`",
            )


def check_resume_devices(run: Run) -> None:
    """A resumed run gets the same world size as before (its config is frozen), so the GPUs it
    trained on must be there: sharded optimizer states (ZeRO, FSDP) only load into as many ranks as
    saved them, and a DDP run on fewer GPUs would silently change the effective batch size. Refuse
    with the numbers instead of starting a trainer that fails or trains differently."""
    from ..preflight import check_devices, visible_gpu_ids

    started = run.last_started_event()
    if not started or started.get("device") != "cuda":
        return  # trained on the CPU: gloo processes need no GPU
    config = run.config()
    ids = visible_gpu_ids()
    count = len(ids)
    world = int(started.get("world_size") or config.nproc)
    if count < world:
        where = f"GPU {','.join(map(str, config.gpus))}" if config.gpus else f"{world} GPU{'s' if world != 1 else ''}"
        raise UserError(
            f"Run {run.id} trained on {where} ({world} process{'es' if world != 1 else ''}, {config.strategy}), "
            f"but {count} GPU{'s are' if count != 1 else ' is'} visible now",
            hint="resume where those GPUs are visible (check CUDA_VISIBLE_DEVICES and `nvidia-smi`); the checkpoint "
            f"resumes with the same number of processes; to change it, start a new run from {CONFIG_FILE}",
        )
    check_devices(config, ids, what=f"Run {run.id}")


def resume(run: Run) -> Checkpoint:
    """Check and relaunch under the run folder's lock: of several concurrent resumes exactly one starts a
    supervisor; the others find the run queued (or the lock held) and say so."""
    from ..locks import locks_dir, run_lock

    with run_lock(run.path, "resuming"):
        ckpt = prepare_resume(run)
        locks_dir(run.path.parent)  # refused before the run is marked queued
        status = run.raw_status()
        status.state = "queued"
        status.resume_from = str(ckpt.path)
        status.kind = status.hint = status.message = None
        status.exit_code = None
        status.ended_at = None
        status.pid = status.pid_start = status.supervisor_pid = status.supervisor_start = None
        try:
            run.write_status(status)
            launch(run, resume_from=ckpt.path)
        except OSError as exc:
            raise UserError(f"Cannot resume run {run.id}: {exc.strerror or exc} ({exc.filename or run.path})",
                            hint="the runs root must be writable with free space") from None
    return ckpt


def _signal_group(status: RunStatus, sig: int) -> bool:
    """Signal the run's process group (supervisor + trainer) once; fall back to the pids.

    The supervisor and the trainer share one group, and each process group gets the signal once:
    a second SIGTERM a moment after the first would only make the trainer's stop handler run twice.
    """
    signalled: set[int] = set()
    for pid, start in ((status.supervisor_pid, status.supervisor_start), (status.pid, status.pid_start)):
        # Without its start time a pid may have been reused by anyone's process: never signal it.
        if pid and start is not None and process_alive(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                group = os.getpgid(pid)
                if group not in signalled:
                    os.killpg(group, sig)
                    signalled.add(group)
    return bool(signalled)


# How long a stop waits for the run folder's lock before it takes the holder for another stop of the same run.
LOCK_PATIENCE_S = 2.0


def stop(run: Run, now: bool = False, wait: float = 0.0, escalate_after: float | None = None) -> RunStatus:
    """Graceful stop: SIGTERM to the process group (checkpoint at the next step, then ``stopped``).

    ``now`` (or a second stop while ``stopping``) sends SIGKILL. ``wait`` seconds are spent
    waiting for a terminal state; ``escalate_after`` turns a slow graceful stop into SIGKILL.

    A stop holds the run folder's lock while it signals and waits. A stop that finds the lock held is
    the same request arriving twice (two consoles, a script and an operator), not an operator asking
    again: it only waits, so the run still ends gracefully with its checkpoint instead of being killed.
    """
    from ..locks import try_run_lock

    status = run.status()
    if status.state in TERMINAL_STATES:
        raise UserError(f"Run {run.id} is not running (state: {status.state})")
    if now:
        _kill(run, status)
        return run.status()
    fd = try_run_lock(run.path)
    deadline = time.time() + LOCK_PATIENCE_S
    while fd is None and time.time() < deadline:  # a resume holds it only while it launches
        time.sleep(0.05)
        fd = try_run_lock(run.path)
    if fd is None:
        return _wait_for_end(run, wait, None)
    try:
        status = run.status()  # again, under the lock: another stop may have ended it meanwhile
        if status.state in TERMINAL_STATES:
            return status
        if status.state == "stopping":
            _kill(run, status)
            return run.status()
        run.update_status(state="stopping")
        if not _signal_group(status, signal.SIGTERM):
            return run.status()
        return _wait_for_end(run, wait, escalate_after)
    finally:
        os.close(fd)


def _wait_for_end(run: Run, wait: float, escalate_after: float | None) -> RunStatus:
    started = time.time()
    while time.time() - started < wait:
        current = run.status()
        if current.state in TERMINAL_STATES:
            return current
        if escalate_after is not None and time.time() - started > escalate_after:
            _kill(run, current)
            return run.status()
        time.sleep(0.2)
    return run.status(reconcile=False)


def _kill(run: Run, status: RunStatus) -> None:
    _signal_group(status, signal.SIGKILL)
    for _ in range(50):
        if not run.processes_alive(status):
            break
        time.sleep(0.1)
    current = run.raw_status()
    if current.state not in TERMINAL_STATES:
        ckpt = run.newest_complete_checkpoint()
        hint = f"resume continues from {ckpt.path.name}" if ckpt else "no complete checkpoint yet"
        with ev.EventWriter(run.events_path, attempt=current.attempt or 1) as writer:
            writer.emit(ev.STOPPED, reason="killed", step=current.step, hint=hint)
        current.state = "stopped"
        current.kind = "killed"
        current.message = "stopped with SIGKILL (no final checkpoint)"
        current.hint = hint
        current.ended_at = time.time()
        run.write_status(current)


def delete(run: Run) -> bool:
    """Remove the run folder; never one that may be alive. Returns True when the run was a symlink and
    only the link was removed (its target is left as it is: it may lie outside the runs root).

    Liveness does not trust status.json alone (it may be garbled or hostile): the event log's pids with
    their start times and any process whose command line names the folder count too.
    """
    try:
        status: RunStatus | None = run.status()
    except UserError:
        status = None
    if status is not None and status.state in ACTIVE_STATES and run.processes_alive(status):
        raise UserError(f"Run {run.id} is {status.state}; stop it before deleting it")
    alive = run.might_be_alive()
    if alive:
        pids = ", ".join(map(str, alive[:5]))
        raise UserError(f"Run {run.id} may still be running (process {pids} is working on it); not deleting it",
                        hint=f"`dpo-tui stop {run.id}` stops it (or end process {pids}), then delete")
    if run.path.is_symlink():
        os.unlink(run.path)
        return True
    # Rename first so a reader never sees a half-deleted run, then remove.
    trash = run.path.with_name(f".deleting-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(run.path, trash)
    except OSError as exc:
        raise UserError(f"Cannot delete run {run.id}: {exc.strerror or exc}", hint="the runs root must be writable") from None
    shutil.rmtree(trash, ignore_errors=True)
    return False
