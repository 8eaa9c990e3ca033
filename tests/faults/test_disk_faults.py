"""A deleted event log, a disk full before the run, and further operator faults (issue 14, items 7 and 9).

Full filesystems are real: a small tmpfs (tests run as root; skipped with the reason when a mount is
refused), filled before the run so the run folder fits and a checkpoint does not. Refusals run
in-process; processes and signals are real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpo_tui.core import events as ev
from dpo_tui.core import runs
from dpo_tui.core.config import RunConfig
from tests.support.cli import (
    log_steps,
    run_cli,
    run_cli_inprocess,
    start_run,
    wait_for_state,
    wait_for_step,
    wait_until,
)
from tests.support.mounts import tmpfs
from tests.support.reliability import record_outcome

SLOW = {"DPO_TUI_FAULT_STEP_DELAY": "0.3"}
TERMINAL = {"finished", "stopped", "failed", "crashed"}
BAD = "20250102-000000-bad-b0.1"
RESERVE_FILE = ".disk-reserve"  # what the trainer sets aside in the run folder (dpo_tui/worker/train_failures.py)


def _no_internal_error(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout + proc.stderr
    assert "internal error" not in out and "Traceback" not in out, out
    return out


def _terminal_events(path: Path) -> list[dict]:
    return [e for e in ev.read_events(path / "events.jsonl") if e.get("type") in ev.TERMINAL_TYPES]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "8m") as mount:
        yield mount


def _fill(mount: Path, leave: int) -> None:
    """Fill the filesystem until ``leave`` bytes are free."""
    import shutil

    free = shutil.disk_usage(mount).free
    with open(mount / "filler", "wb") as fh:
        fh.truncate(0)
        fh.write(b"\1" * max(0, free - leave))
        fh.flush()
        os.fsync(fh.fileno())


# --- item 7: events.jsonl deleted mid-run --------------------------------------------------------------
def test_event_writer_follows_a_deleted_log(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path)
    writer.emit(ev.LOG, step=1, metrics={"loss": 0.7})
    path.unlink()
    writer.emit(ev.LOG, step=2, metrics={"loss": 0.5})
    writer.emit(ev.FINISHED, step=2)
    writer.close()
    history = ev.RunHistory()
    history.apply(ev.read_events(path))
    assert [e["seq"] for e in ev.read_events(path)] == [1, 2, 3]  # the history before the deletion came back
    assert history.step == 2 and history.terminal["type"] == "finished"
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]  # no restore file left behind


def test_event_writer_fills_an_empty_replacement(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path)
    writer.emit(ev.LOG, step=1, metrics={"loss": 0.7})
    path.unlink()
    path.write_text("")  # e.g. `> events.jsonl` after an `rm`
    writer.emit(ev.FINISHED, step=1)
    writer.close()
    assert [e["type"] for e in ev.read_events(path)] == ["log", "finished"]


def test_events_log_deleted_mid_run(runs_root: Path, sample_model: Path) -> None:
    path = start_run(runs_root, "--max-steps", "8", env=SLOW)
    wait_for_step(path, 3)
    (path / "events.jsonl").unlink()
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "finished", status
    assert log_steps(path) == list(range(1, 9))
    assert [e["type"] for e in _terminal_events(path)] == ["finished"]
    attach = run_cli_inprocess("attach", "--runs-dir", str(runs_root), path.name)
    assert "at step 8" in _no_internal_error(attach), attach.stdout
    row = json.loads(run_cli_inprocess("runs", "--runs-dir", str(runs_root), "--json").stdout)[0]
    assert row["step"] == 8 and row["loss"] is not None, row
    record_outcome("events", "events.jsonl deleted mid-run", "recovered", steps_lost=0)


# --- item 9: a disk full before the run ------------------------------------------------------------
@pytest.mark.parametrize(("case", "leave_kib", "kept"), [("first checkpoint", 1000, 0), ("second checkpoint", 1900, 1)])
def test_disk_full_before_the_run(small_fs: Path, sample_model: Path, case: str, leave_kib: int, kept: int) -> None:
    root = small_fs / "runs"
    root.mkdir()
    _fill(small_fs, leave_kib * 1024)
    path = start_run(root, "--max-steps", "12", "--save-fraction", "0.34", "--save-total-limit", "10")  # saves at 5, 10
    status = wait_for_state(path, TERMINAL, timeout=300)
    run = runs.Run(path)
    assert status["state"] == "failed" and status["kind"] == "disk", status
    assert "disk full while saving checkpoint-" in status["message"] and str(small_fs) in status["message"], status
    assert "needs about" in status["message"] and "free space on" in status["hint"], status
    terminal = _terminal_events(path)
    assert [e["type"] for e in terminal] == ["failed"] and terminal[0]["kind"] == "disk", terminal
    checkpoints = run.checkpoints()
    assert all(c.complete for c in checkpoints) and len(checkpoints) == kept, checkpoints  # the partial one is gone
    assert not (path / RESERVE_FILE).exists()
    record_outcome("storage", f"disk full before the run ({case})", "failed-clean", corrupt_chosen=0, kept_checkpoints=kept)


# --- unlisted faults ---------------------------------------------------------------------------------
def _fake_run(root: Path, state: str = "finished", **status: object) -> runs.Run:
    run = runs.create_run(root, RunConfig(), run_id=BAD)
    fields: dict = {"created_at": 1_700_000_000.0, "host": runs.host_name(), "step": 2, "max_steps": 4, **status}
    run.write_status(runs.RunStatus(state=state, **fields))
    line = {"v": 1, "seq": 1, "t": 1_700_000_001.0, "attempt": 1, "type": "log", "step": 2, "metrics": {"loss": 0.5}}
    run.events_path.write_text(json.dumps(line) + "\n")
    return run


def _every_command(root: Path) -> dict[str, str]:
    """`runs`, `runs --json`, `attach`, `resume`, `stop` and `delete` on the bad run: none hangs or breaks."""
    outs = {}
    for name, args in (("runs", ["runs"]), ("json", ["runs", "--json"]), ("attach", ["attach", BAD]), ("resume", ["resume", BAD]),
                       ("stop", ["stop", BAD, "--wait", "1"]), ("delete", ["delete", BAD, "--yes"])):
        started = time.monotonic()
        proc = run_cli_inprocess(args[0], "--runs-dir", str(root), *args[1:])
        assert time.monotonic() - started < 20, name
        outs[name] = _no_internal_error(proc)
        assert proc.returncode in (0, 1, 2), (name, proc.returncode)
    assert not (root / BAD).exists()
    return outs


def test_config_is_a_symlink_to_dev_zero(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "runs")
    run.config_path.unlink()
    run.config_path.symlink_to("/dev/zero")
    outs = _every_command(tmp_path / "runs")
    assert "not a regular file" in outs["runs"], outs["runs"]
    record_outcome("bad-input", "run-folder/config-symlink-to-dev-zero", "listed", category="run-folder")


def test_config_is_a_1gb_sparse_file(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "runs")
    with open(run.config_path, "wb") as fh:
        fh.truncate(1 << 30)
    outs = _every_command(tmp_path / "runs")
    assert "more than the" in outs["runs"], outs["runs"]
    record_outcome("bad-input", "run-folder/config-1gb-sparse", "listed", category="run-folder")


@pytest.mark.parametrize("kind", ["folder", "dev-zero"])
def test_events_log_is_not_a_file(tmp_path: Path, kind: str) -> None:
    run = _fake_run(tmp_path / "runs")
    run.events_path.unlink()
    if kind == "folder":
        run.events_path.mkdir()
    else:
        run.events_path.symlink_to("/dev/zero")
    _every_command(tmp_path / "runs")
    record_outcome("bad-input", f"run-folder/events-is-{kind}", "tolerated", category="run-folder")


def test_resume_after_the_base_model_was_deleted(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = _fake_run(root, state="stopped")
    config = json.loads(run.config_path.read_text())
    run.config_path.write_text(json.dumps({**config, "model": str(tmp_path / "gone-model")}))
    (run.checkpoints_dir / "checkpoint-2").mkdir(parents=True)
    proc = run_cli_inprocess("resume", "--runs-dir", str(root), BAD)
    out = _no_internal_error(proc)
    assert proc.returncode == 2 and "no longer there" in out and "--model" in out, out
    assert runs.Run(run.path).raw_status().state == "stopped"  # nothing was launched
    record_outcome("bad-input", "run-folder/base-model-deleted-before-resume", "refused", category="run-folder")


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)


def test_status_pid_reused_by_an_unrelated_process(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    other = _sleeper()
    try:
        wait_until(lambda: runs.process_start_time(other.pid) is not None, what="the unrelated process")
        real_start = runs.process_start_time(other.pid)
        assert real_start is not None
        _fake_run(root, state="running", pid=other.pid, pid_start=real_start - 1000, supervisor_pid=other.pid,
                  supervisor_start=real_start - 1000)
        row = json.loads(run_cli_inprocess("runs", "--runs-dir", str(root), "--json").stdout)[0]
        assert row["state"] == "crashed", row  # its processes are gone; the pid now names someone else
        proc = run_cli_inprocess("stop", "--runs-dir", str(root), BAD)
        _no_internal_error(proc)
        proc = run_cli_inprocess("delete", "--runs-dir", str(root), BAD, "--yes")
        assert proc.returncode == 0, proc.stderr
        assert other.poll() is None  # never signalled
    finally:
        other.kill()
        other.wait()
    record_outcome("bad-input", "run-folder/pid-reused-by-another-process", "refused", category="run-folder")


def test_stop_when_the_supervisor_is_sigstopped(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    frozen = _sleeper()
    try:
        wait_until(lambda: runs.process_start_time(frozen.pid) is not None, what="the supervisor stand-in")
        start = runs.process_start_time(frozen.pid)
        _fake_run(root, state="running", supervisor_pid=frozen.pid, supervisor_start=start)
        os.kill(frozen.pid, signal.SIGSTOP)
        started = time.monotonic()
        proc = run_cli_inprocess("stop", "--runs-dir", str(root), BAD, "--wait", "3", "--timeout", "1")
        assert time.monotonic() - started < 15
        _no_internal_error(proc)
        frozen.wait(timeout=10)  # the escalation's SIGKILL ends even a stopped process
        status = runs.Run(root / BAD).status()
        assert status.state == "stopped" and status.kind == "killed", status
    finally:
        if frozen.poll() is None:
            frozen.kill()
            frozen.wait()
    record_outcome("process", "stop while the supervisor is SIGSTOPped", "recovered", steps_lost=0)


def test_runs_root_full_at_launch(small_fs: Path) -> None:
    root = small_fs / "runs"
    root.mkdir()
    _fill(small_fs, 0)
    proc = run_cli_inprocess("train", "--runs-dir", str(root), "--max-steps", "2")
    out = _no_internal_error(proc)
    assert proc.returncode == 2 and ("space" in out.lower() or "disk" in out.lower()), out
    for folder in (p for p in root.iterdir() if not p.name.startswith(".")):
        state = runs.Run(folder).status().state
        assert state not in ("queued", "starting", "running"), (folder.name, state)
    record_outcome("storage", "runs root full at launch", "rejected", tracebacks=0)


def test_two_stops_at_once(runs_root: Path, sample_model: Path) -> None:
    path = start_run(runs_root, "--max-steps", "30", env=SLOW)
    wait_for_step(path, 2)
    procs = [subprocess.Popen([sys.executable, "-m", "dpo_tui", "stop", "--runs-dir", str(runs_root), path.name],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for out, err in outs:
        assert "internal error" not in out + err and "Traceback" not in err, err
    status = wait_for_state(path, TERMINAL, timeout=120)
    assert status["state"] == "stopped" and status["kind"] != "killed", status  # graceful: one SIGTERM reached it
    assert [e["type"] for e in _terminal_events(path)] == ["stopped"]
    assert runs.Run(path).newest_complete_checkpoint() is not None
    run_cli("runs", "--runs-dir", str(runs_root), check=True)
    record_outcome("process", "two stops of the same run at once", "recovered", steps_lost=0)
