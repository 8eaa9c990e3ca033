"""Concurrency, locks and launch faults (issue 14 §2, §10, §18, §21, §22, §25, §26), each with its outcome.

Refusals run the CLI in-process; where processes, signals and locks are the point, real supervisors
and trainers run on the tiny model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from dpo_tui.core import runs
from dpo_tui.core.config import RunConfig
from dpo_tui.core.runs import Run
from tests.support.cli import (
    dpo_tui_cmd,
    run_cli_inprocess,
    start_run,
    wait_for_state,
    wait_until,
)
from tests.support.gate import StepGate
from tests.support.reliability import record_outcome

TERMINAL = {"finished", "stopped", "failed", "crashed"}




def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "This is a bug" not in proc.stderr, proc.stderr


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cleanup(path: Path) -> None:
    run = Run(path)
    if run.raw_status().state not in TERMINAL:
        runs.stop(run, now=True)


# --- refusals before anything is created -------------------------------------------------------------
@pytest.mark.parametrize("betas", ["0.1,inf", "0.1,nan", "0.1,1e999"])
def test_ladder_non_finite_beta_creates_nothing(runs_root: Path, betas: str) -> None:
    proc = run_cli_inprocess("ladder", "--runs-dir", str(runs_root), "--betas", betas, "--max-steps", "2")
    _no_traceback(proc)
    assert proc.returncode != 0 and "finite" in proc.stderr, proc.stderr
    assert [p for p in runs_root.iterdir() if not p.name.startswith(".")] == []
    record_outcome("input", f"ladder --betas {betas}", "rejected")


def test_ladder_rejects_a_bad_rung_before_creating_any(runs_root: Path) -> None:
    from dpo_tui.core.errors import UserError
    from dpo_tui.core.ladder import make_ladder

    base = RunConfig(model="sample", dataset="sample")
    with pytest.raises(UserError) as info:
        make_ladder(runs_root, base, [0.1, -1.0], "g")  # a rung the parser would refuse, reaching the builder
    assert "rung 2" in info.value.summary
    assert [p for p in runs_root.iterdir() if not p.name.startswith(".")] == []
    record_outcome("input", "ladder rung with an invalid config", "rejected")


def test_ladder_warns_about_trust_remote_code(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dpo_tui.cli.ladder as cli_ladder

    monkeypatch.setattr(cli_ladder, "make_ladder", lambda *a, **k: [])
    proc = run_cli_inprocess("ladder", "--runs-dir", str(runs_root), "--betas", "0.1,0.2", "--trust-remote-code")
    _no_traceback(proc)
    assert proc.returncode == 0 and "Warning: --trust-remote-code" in proc.stderr, proc.stderr
    record_outcome("input", "ladder with trust_remote_code", "warned")


def test_locks_path_is_a_regular_file(runs_root: Path, sample_model: Path) -> None:
    (runs_root / ".locks").write_text("not a folder\n")
    for args in (("train", "--max-steps", "2"), ("ladder", "--betas", "0.1,0.2", "--max-steps", "2")):
        proc = run_cli_inprocess(args[0], "--runs-dir", str(runs_root), *args[1:])
        _no_traceback(proc)
        assert proc.returncode != 0 and ".locks is not a folder" in proc.stderr, proc.stderr
    for path in (p for p in runs_root.iterdir() if not p.name.startswith(".")):
        assert Run(path).status().state == "failed"  # the train attempt's folder says why; never "crashed"
    assert not any(p for p in runs_root.iterdir() if not p.name.startswith(".") and "b0.2" in p.name)  # ladder: nothing
    record_outcome("process", ".locks is a regular file", "rejected")


# --- lock files that are not what they seem ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "directory"])
def test_planted_lock_file_is_refused_and_never_written(tmp_path: Path, runs_root: Path, sample_model: Path, kind: str) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("precious\n")
    locks = runs_root / ".locks"
    locks.mkdir()
    lock = locks / "cpu.lock"
    {"symlink": lambda: lock.symlink_to(outside), "hardlink": lambda: os.link(outside, lock),
     "fifo": lambda: os.mkfifo(lock), "directory": lock.mkdir}[kind]()
    path = start_run(runs_root, "--max-steps", "2", env={"CUDA_VISIBLE_DEVICES": ""})
    status = wait_for_state(path, TERMINAL, timeout=60)
    assert status["state"] == "failed" and status["kind"] == "config", status
    assert "cpu.lock" in status["message"], status
    assert outside.read_text() == "precious\n"
    events = [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events if e["type"] in ("failed", "finished", "stopped")] == ["failed"]
    record_outcome("process", f".locks/cpu.lock is a {kind}", "rejected")


# --- the supervisor's own failure, and no zombies ------------------------------------------------------
def test_supervisor_failure_is_the_runs_outcome_and_leaves_no_zombie(runs_root: Path) -> None:
    run = runs.create_run(runs_root, RunConfig(model="sample", dataset="sample"))
    run.config_path.write_text("{ not json")  # damaged between create and the supervisor's start
    pid = runs.launch(run)
    status = wait_for_state(run.path, TERMINAL, timeout=60)
    assert status["state"] == "failed" and status["kind"] == "config", status
    assert "killed" not in (status.get("message") or "")
    wait_until(lambda: _gone(pid), 30, "the supervisor to exit")
    zombies = [c.pid for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
    assert zombies == [], f"<defunct> children left by launch: {zombies}"
    record_outcome("process", "supervisor fails on its own (damaged config)", "reported")


# --- resume races ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_five_concurrent_resumes_one_wins(runs_root: Path, sample_model: Path) -> None:
    first, again = StepGate(runs_root.parent, 3), StepGate(runs_root.parent, 4)
    path = start_run(runs_root, "--max-steps", "8", "--save-fraction", "0.25", env=first.env)  # saves at 2, 4, 6
    try:
        first.wait_reached()
        assert Run(path).newest_complete_checkpoint().step == 2
        runs.stop(Run(path), now=True)
        cmd = [*dpo_tui_cmd(), "resume", "--runs-dir", str(runs_root), path.name]
        # The resumed trainer holds at step 4: the run is still live while the losers are refused.
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **again.env}) for _ in range(5)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        winners = [r for r in results if r[0] == 0]
        assert len(winners) == 1, results
        for rc, _out, err in results:
            if rc:
                assert "Traceback" not in err and ("is busy: another command or console" in err or "is queued" in err or "is running" in err
                                                   or "is starting" in err), err
        started = [line for line in (path / "supervisor.log").read_text().splitlines() if "Traceback" in line]
        assert started == []
        record_outcome("process", "five concurrent resumes", "one resumed", refused=len(results) - 1)
    finally:
        _cleanup(path)


# --- the device lock outlives a killed supervisor ----------------------------------------------------------
@pytest.mark.slow
def test_sigkill_of_a_supervisor_keeps_the_device_locked(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 1)  # never released: the trainer holds the device until it is killed
    first = start_run(runs_root, "--max-steps", "4", env={**gate.env, "CUDA_VISIBLE_DEVICES": ""})
    second = None
    try:
        gate.wait_reached()
        status = Run(first).raw_status()
        os.kill(status.supervisor_pid, signal.SIGKILL)
        wait_until(lambda: _gone(status.supervisor_pid), 10, "the supervisor to die")
        second = start_run(runs_root, "--max-steps", "2", env={"CUDA_VISIBLE_DEVICES": ""})
        # The queue sees the device held (by the orphaned trainer) instead of free.
        wait_until(lambda: "busy" in (Run(second).raw_status().phase or ""), 90, "the second run to wait for the device")
        assert Run(second).raw_status().started_at is None
        assert psutil.pid_exists(status.pid) and not _gone(status.pid)
        os.kill(status.pid, signal.SIGKILL)  # the trainer goes: the device frees and the queue moves on
        assert wait_for_state(second, {"starting", "running", "finished"}, timeout=60)["state"] in ("starting", "running", "finished")
        record_outcome("process", "SIGKILL of a supervisor while its trainer trains", "device kept locked")
    finally:
        _cleanup(first)
        if second is not None:
            _cleanup(second)


# --- the console: one stop or resume at a time per screen ----------------------------------------------
def test_console_resume_key_twice_starts_one_resume(runs_root: Path) -> None:
    from types import SimpleNamespace

    from dpo_tui.ui import run_actions

    workers: list[SimpleNamespace] = []
    notes: list[str] = []
    screen = SimpleNamespace(services=SimpleNamespace(runs_root=runs_root), notify=lambda text, **_: notes.append(text))
    screen.app = SimpleNamespace(workers=workers)

    def run_worker(_fn, **kw):
        workers.append(SimpleNamespace(group=kw["group"], node=screen, is_finished=False))

    screen.run_worker = run_worker
    run_actions.start_resume(screen, "r1")
    run_actions.start_resume(screen, "r1")  # pressed again while the first is in flight
    assert len(workers) == 1 and notes
    workers[0].is_finished = True
    run_actions.start_resume(screen, "r1")  # once it has finished, the key works again
    assert len(workers) == 2
    record_outcome("process", "console resume key pressed twice", "one resume")


def test_delete_on_a_read_only_root(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        run = runs.create_run(root, RunConfig(model="sample", dataset="sample"))
        run.update_status(state="finished", ended_at=time.time())
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        proc = run_cli_inprocess("delete", "--runs-dir", str(root), "--yes", run.id)
        _no_traceback(proc)
        assert proc.returncode != 0 and "Read-only" in proc.stderr, proc.stderr
        assert run.path.is_dir()
        record_outcome("storage", "delete on a read-only runs root", "rejected")
    finally:
        subprocess.run(["umount", str(root)], capture_output=True)
