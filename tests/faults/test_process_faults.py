"""Process, storage and clock faults on the tiny model, each with its documented outcome.

Every case records what happened (state shown, what was saved, what resume did, steps lost) for
docs/reliability.md. A fault lands mid-run by holding the trainer at a known step (tests/support/gate.py);
a save is caught half-way with the trainer's save-delay hooks. The graceful stop-and-resume case is
``test_stop_then_resume_continues_without_gaps`` in tests/worker/test_train.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dpo_tui.core import events as ev
from dpo_tui.core.runs import Run, RunStatus
from tests.support.cli import (
    dpo_tui_cmd,
    log_steps,
    run_cli,
    run_cli_inprocess,
    start_run,
    wait_for_state,
    wait_until,
)
from tests.support.gate import StepGate
from tests.support.reliability import record_outcome

pytestmark = pytest.mark.slow

TERMINAL = {"finished", "stopped", "failed", "crashed"}




def _resume_to_end(runs_root: Path, path: Path, max_steps: int) -> int:
    """Resume, wait for the end, check the folded steps are exactly 1..max_steps; return the resume step."""
    ckpt = Run(path).newest_complete_checkpoint()
    assert ckpt is not None
    run_cli("resume", "--runs-dir", str(runs_root), path.name, check=True)
    assert wait_for_state(path, TERMINAL, timeout=300)["state"] == "finished"
    assert log_steps(path) == list(range(1, max_steps + 1))
    assert (Run(path).adapter_dir / "COMPLETE").exists()
    return ckpt.step


def test_sigkill_during_a_step(runs_root: Path, sample_model: Path) -> None:
    # The trainer alone is killed (as the OOM killer would); its supervisor records the outcome.
    gate = StepGate(runs_root.parent, 7)
    path = start_run(runs_root, "--max-steps", "12", "--save-fraction", "0.34", env=gate.env)  # saves at 5, 10
    gate.wait_reached()
    run = Run(path)
    killed_at = max(log_steps(path))
    os.kill(run.raw_status().pid, signal.SIGKILL)
    status = wait_for_state(path, {"crashed", "failed"}, timeout=30)
    assert status["state"] == "crashed" and status["kind"] == "killed"
    assert "OOM killer" in status["hint"]
    terminal = [e for e in ev.read_events(path / "events.jsonl") if e["type"] == "failed"]
    assert len(terminal) == 1 and terminal[0]["kind"] == "killed"
    resumed_from = _resume_to_end(runs_root, path, 12)
    lost = killed_at - resumed_from
    assert 0 <= lost <= 5
    record_outcome("process", "SIGKILL during a step", "recovered", steps_lost=lost, save_interval=5, corrupt_chosen=0)


def test_sigkill_during_a_checkpoint_save(runs_root: Path, sample_model: Path) -> None:
    env = {"DPO_TUI_FAULT_SAVE_DELAY": "4"}  # every save pauses mid-way; the second is killed there
    path = start_run(runs_root, "--max-steps", "12", "--save-fraction", "0.34", env=env)
    second = path / "checkpoints" / "checkpoint-10"
    wait_until(second.exists, timeout=240, what="the second checkpoint save to begin")
    run = Run(path)
    assert not (second / "trainer_state.json").exists()
    os.killpg(run.raw_status().pgid, signal.SIGKILL)
    assert wait_for_state(path, {"crashed"}, timeout=30)["state"] == "crashed"
    by_step = {c.step: c for c in run.checkpoints()}
    assert not by_step[10].complete and by_step[5].complete
    assert run.newest_complete_checkpoint().step == 5  # the half-written one is never chosen
    resumed_from = _resume_to_end(runs_root, path, 12)
    record_outcome("process", "SIGKILL during a checkpoint save", "recovered", steps_lost=10 - resumed_from, save_interval=5,
                   corrupt_chosen=0)


def test_sigkill_during_the_final_adapter_save(runs_root: Path, sample_model: Path) -> None:
    path = start_run(runs_root, "--max-steps", "6", "--save-fraction", "0.5", env={"DPO_TUI_FAULT_FINAL_SAVE_DELAY": "6"})
    run = Run(path)
    partial = path / "adapter.partial"
    wait_until(partial.exists, timeout=240, what="the final save to begin")
    os.kill(run.raw_status().pid, signal.SIGKILL)
    status = wait_for_state(path, {"crashed", "failed"}, timeout=30)
    assert status["state"] == "crashed"
    assert run.final_weights_dir() is None and not run.adapter_dir.exists()  # no half adapter is ever "the" adapter
    resumed_from = _resume_to_end(runs_root, path, 6)
    assert not partial.exists()
    record_outcome("process", "SIGKILL during the final adapter save", "recovered", steps_lost=6 - resumed_from, save_interval=3,
                   corrupt_chosen=0)


def test_sigterm_then_second_sigterm_kills(runs_root: Path, sample_model: Path) -> None:
    # A slow save (4 s, after the weights): the second stop lands before the graceful one completes.
    gate = StepGate(runs_root.parent, 7)
    env = {**gate.env, "DPO_TUI_FAULT_SAVE_DELAY": "4"}
    path = start_run(runs_root, "--max-steps", "12", "--save-fraction", "0.34", env=env)  # saves at 5, 10
    gate.wait_reached()
    t0 = time.time()
    first = run_cli_inprocess("stop", "--runs-dir", str(runs_root), path.name, "--wait", "0")
    assert first.returncode == 0, first.stderr
    assert Run(path).raw_status().state == "stopping"
    proc = run_cli_inprocess("stop", "--runs-dir", str(runs_root), path.name)
    assert proc.returncode == 0, proc.stderr
    status = wait_for_state(path, {"stopped"}, timeout=30)
    latency = time.time() - t0
    assert status["kind"] == "killed" and "stopped" in proc.stdout
    terminal = [e for e in ev.read_events(path / "events.jsonl") if e["type"] in ev.TERMINAL_TYPES]
    assert [e["type"] for e in terminal] == ["stopped"]
    resumed_from = _resume_to_end(runs_root, path, 12)
    record_outcome("process", "double SIGTERM (escalates to SIGKILL)", "recovered", stop_latency_s=round(latency, 2),
                   steps_lost=max(0, status["step"] - resumed_from), save_interval=5, corrupt_chosen=0)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_terminal_hang_up_through_tmux(runs_root: Path, sample_model: Path) -> None:
    session = f"dpo-hup-{os.getpid()}"
    gate = StepGate(runs_root.parent, 2)
    cmd = " ".join([*dpo_tui_cmd(), "train", "--runs-dir", str(runs_root), "--max-steps", "4", "--follow"])
    gate_env = " ".join(f"{k}={v}" for k, v in gate.env.items())
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", f"{gate_env} {cmd}"], check=True)
    try:
        def run_folders() -> list[Path]:
            return [p for p in runs_root.iterdir() if not p.name.startswith(".")]  # not .locks

        wait_until(run_folders, timeout=60, what="the run folder")
        path = run_folders()[0]
        gate.wait_reached()  # the terminal hangs up while the run is mid-way
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        assert path.name in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)  # SIGHUP to the pane, like a dropped SSH
        gate.release()
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "finished"
    record_outcome("process", "launching terminal hung up (tmux)", "survived", steps_lost=0)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_console_killed_while_a_run_streams(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 3)
    path = start_run(runs_root, "--max-steps", "6", env=gate.env)
    session = f"dpo-ui-{os.getpid()}"
    cmd = " ".join([*dpo_tui_cmd(), "--runs-dir", str(runs_root)])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd], check=True)
    try:
        gate.wait_reached()
        # Killed once the console shows the streaming run, not after a guessed delay.
        wait_until(lambda: path.name[:15] in subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                                             text=True).stdout, timeout=60, what="the console to list the run")
        pane_pid = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True, text=True).stdout.split()[0])
        os.kill(pane_pid, signal.SIGKILL)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    before = max(log_steps(path))
    gate.release()
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "finished" and max(log_steps(path)) == 6 > before
    record_outcome("process", "console killed while a run streams", "survived", steps_lost=0)


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True).returncode == 0


def test_full_disk_fails_cleanly_and_keeps_older_checkpoints(tmp_path: Path, sample_model: Path) -> None:
    root = tmp_path / "small"
    if not _mount_tmpfs(root, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        path = start_run(root, "--max-steps", "12", "--save-fraction", "0.17", "--save-total-limit", "10")
        status = wait_for_state(path, TERMINAL, timeout=300)
        run = Run(path)
        assert status["state"] == "failed" and status["kind"] == "disk", status
        assert "disk full" in status["message"] and "free space" in status["hint"]
        complete = [c for c in run.checkpoints() if c.complete]
        assert complete and all(c.complete for c in run.checkpoints())  # the partial save was cleaned up
        record_outcome("storage", "disk full during a checkpoint save", "failed-clean", corrupt_chosen=0,
                       kept_checkpoints=len(complete))
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_unwritable_runs_root_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_cli("train", "--runs-dir", str(blocker / "runs"))
    assert proc.returncode == 2 and "Cannot create the runs root" in proc.stderr and "Traceback" not in proc.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True).returncode == 0:
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=False)
            proc = run_cli("train", "--runs-dir", str(ro))
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            assert "runs root" in proc.stderr or "run folder" in proc.stderr
        finally:
            subprocess.run(["umount", "-l", str(ro)], check=False)
    record_outcome("storage", "unwritable runs root", "rejected", tracebacks=0)


def test_corrupt_newest_checkpoint_is_skipped_on_resume(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 8)
    path = start_run(runs_root, "--max-steps", "12", "--save-fraction", "0.25", env=gate.env)  # saves at 3, 6, 9
    gate.wait_reached()
    run_cli("stop", "--runs-dir", str(runs_root), path.name, check=True)
    status = wait_for_state(path, {"stopped"}, timeout=60)
    assert status["kind"] != "killed", status  # a graceful stop, not the CLI's SIGKILL escalation
    run = Run(path)
    newest = run.checkpoints()[-1]
    assert newest.step == status["step"] == 8
    weights = newest.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # half-written
    chosen = run.newest_complete_checkpoint()
    assert chosen.step < newest.step
    _resume_to_end(runs_root, path, 12)
    record_outcome("storage", "corrupt newest checkpoint", "recovered", corrupt_chosen=0, steps_lost=newest.step - chosen.step)


def test_torn_and_garbage_event_lines(trained_run: Run, tmp_path: Path) -> None:
    copy = tmp_path / "runs" / trained_run.id
    shutil.copytree(trained_run.path, copy)
    with open(copy / "events.jsonl", "a") as fh:
        fh.write("this is not json\n\x00\x01garbage\n{\"v\":1,\"type\":\"log\",\"step\":31,\"metr")
    reader = ev.EventReader(copy / "events.jsonl")
    history = ev.RunHistory()
    history.apply(reader.read_new())
    assert history.step == 30 and reader.bad_lines == 2 and history.terminal["type"] == "finished"
    proc = run_cli("runs", "--runs-dir", str(copy.parent), "--json", check=True)
    assert json.loads(proc.stdout)[0]["state"] == "finished"
    record_outcome("events", "torn last line and garbage lines", "tolerated", bad_lines=2)


def test_status_json_deleted_mid_run(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 3)
    path = start_run(runs_root, "--max-steps", "5", env={**gate.env, "DPO_TUI_HEARTBEAT_S": "1"})
    gate.wait_reached()
    (path / "status.json").unlink()
    rows = json.loads(run_cli("runs", "--runs-dir", str(runs_root), "--json", check=True).stdout)
    assert rows[0]["state"] in ("running", "starting")  # rebuilt from the event log and live pids
    # The trainer's next heartbeat writes it back whole: the pids with their start times (the
    # pid-reuse guard) and the supervisor, so stop and crash detection keep working.
    wait_until((path / "status.json").exists, timeout=30, what="the heartbeat to write status.json back")
    written = json.loads((path / "status.json").read_text())
    assert written["state"] == "running", written  # still held at step 3
    assert written["pid"] and written["pid_start"] and written["supervisor_pid"] and written["supervisor_start"], written
    gate.release()
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "finished"
    record_outcome("events", "status.json deleted mid-run", "recovered", steps_lost=0)


def test_stale_lock_from_a_dead_process(runs_root: Path, sample_model: Path) -> None:
    locks = runs_root / ".locks"
    locks.mkdir()
    (locks / "cpu.lock").write_text("20200101-000000-dead-b0.1 999999\n")  # left by a crashed supervisor
    path = start_run(runs_root, "--max-steps", "2")
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "finished"
    record_outcome("process", "stale lock from a dead process", "ignored", steps_lost=0)


def test_two_launches_on_the_same_device(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 2)  # whichever run goes first holds at step 2 until the checks are done
    procs = [
        subprocess.Popen([*dpo_tui_cmd(), "train", "--runs-dir", str(runs_root), "--max-steps", "3", "--name", f"twin{i}"],
                         stdout=subprocess.PIPE, text=True, env={**os.environ, **gate.env})
        for i in range(2)
    ]
    ids = [p.communicate(timeout=60)[0].split()[0] for p in procs]
    paths = [runs_root / i for i in ids]
    gate.wait_reached()
    states = sorted(Run(p).status().state for p in paths)
    assert states == ["queued", "running"]
    # status.json deleted while waiting in the queue: the supervisor writes it back, with its pid.
    queued = next(p for p in paths if Run(p).raw_status().state == "queued")
    (queued / "status.json").unlink()
    wait_until((queued / "status.json").exists, timeout=5, what="the queued run's status.json to come back")
    back = Run(queued).status()
    assert back.state == "queued" and back.supervisor_pid and back.supervisor_start, back
    gate.release()
    ends = [wait_for_state(p, TERMINAL, timeout=300) for p in paths]
    assert [e["state"] for e in ends] == ["finished", "finished"]
    first, second = sorted(ends, key=lambda s: s["started_at"])
    assert second["started_at"] >= first["ended_at"] - 0.5  # never two trainers on one device
    record_outcome("process", "two launches on the same device", "queued", steps_lost=0)


def test_clock_jumps_do_not_mislead(tmp_path: Path) -> None:
    # The wall clock can jump (NTP, suspend). Rates and ETAs must not go negative, and a heartbeat
    # from "the future" must not read as stalled. (Simulated: changing the host clock would disturb
    # everything else on the machine.)
    history = ev.RunHistory()
    history.apply([{"type": "started", "max_steps": 10}, {"type": "log", "step": 1, "t": 1000.0, "metrics": {"loss": 0.7}},
                   {"type": "log", "step": 2, "t": 400.0, "metrics": {"loss": 0.6}}])  # clock went back 10 minutes
    assert history.steps_per_second() is None and history.eta_seconds() is None
    run = Run(tmp_path)
    future = RunStatus(state="running", heartbeat=time.time() + 3600)
    assert not run.is_stalled(future)
    past = RunStatus(state="running", heartbeat=time.time() - 3600)
    assert run.is_stalled(past)
    record_outcome("clock", "system clock jumps (simulated)", "tolerated")


def test_nan_injected_mid_run_keeps_good_checkpoints(runs_root: Path, sample_model: Path) -> None:
    path = start_run(runs_root, "--max-steps", "12", "--save-fraction", "0.25", env={"DPO_TUI_FAULT_NAN_AT_STEP": "7"})
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "failed" and status["kind"] == "nan"
    assert "learning rate" in status["hint"]
    nan_log = [e for e in ev.read_events(path / "events.jsonl") if e["type"] == "log" and e["nonfinite"]]
    assert nan_log and nan_log[0]["step"] == 7 and "loss" in nan_log[0]["nonfinite"]
    assert nan_log[0]["metrics"]["loss"] is None  # written as null, never bare NaN
    run = Run(path)
    assert [c.step for c in run.checkpoints()] == [3, 6]  # nothing saved from the poisoned model
    assert not run.adapter_dir.exists()
    # Resume (without the injected fault) continues from the last good checkpoint.
    resumed_from = _resume_to_end(runs_root, path, 12)
    assert resumed_from == 6
    record_outcome("numeric", "NaN injected mid-run", "recovered", corrupt_chosen=0, steps_lost=7 - resumed_from)
