"""The detached job folder shared by exports, evaluations and pair jobs: a real detached process, real signals."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dpo_tui.core.job_folder import (
    ProgressTail,
    effective_state,
    eta_seconds,
    launch_detached,
    read_status,
    stop_job,
    write_status,
)
from tests.support.cli import wait_until


def test_a_detached_worker_runs_in_its_own_session_and_stops_on_request(tmp_path: Path) -> None:
    write_status(tmp_path, state="starting", created_at=time.time())
    pid = launch_detached(tmp_path, "tests.support.dummy_job", [str(tmp_path)], "test")
    wait_until(lambda: (read_status(tmp_path) or {}).get("state") == "running", timeout=60, what="the worker running")
    assert os.getsid(pid) == pid, "the worker leads its own session, so a closing terminal does not take it down"
    tail = ProgressTail(tmp_path)
    wait_until(lambda: any(True for _ in tail.new_events()), timeout=30, what="progress")
    assert effective_state(read_status(tmp_path)) == "running"
    assert stop_job(tmp_path, wait_s=30) == "stopped"
    status = read_status(tmp_path) or {}
    assert status["done"] >= 1 and status["ended_at"] >= status["started_at"]
    assert stop_job(tmp_path) == "stopped", "stopping a stopped job is a no-op"


def test_a_vanished_worker_reads_as_crashed(tmp_path: Path) -> None:
    write_status(tmp_path, state="running", pid=2**22 - 7, pid_start=1.0)
    assert effective_state(read_status(tmp_path)) == "crashed"
    write_status(tmp_path, state="starting", pid=None, created_at=time.time() - 3600)
    assert effective_state(read_status(tmp_path)) == "crashed"
    write_status(tmp_path, state="starting", created_at=time.time())
    assert effective_state(read_status(tmp_path)) == "starting"
    (tmp_path / "status.json").write_text("{torn")
    assert effective_state(read_status(tmp_path)) == "unreadable"


def test_progress_tail_waits_for_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_text(json.dumps({"n": 1}) + "\n" + '{"n": ')
    tail = ProgressTail(tmp_path)
    assert [e["n"] for e in tail.new_events()] == [1]
    with open(path, "a") as fh:
        fh.write('2}\nnot json\n["a list"]\n')
    assert [e["n"] for e in tail.new_events()] == [2]
    assert list(tail.new_events()) == []


def test_eta_counts_only_this_attempts_pace() -> None:
    assert eta_seconds(50, 100, started_at=0.0, done_at_start=40, now=10.0) == 50.0
    assert eta_seconds(40, 100, started_at=0.0, done_at_start=40, now=10.0) is None
    assert eta_seconds(100, 100, started_at=0.0, now=10.0) is None
    assert eta_seconds(5, 0, started_at=0.0, now=10.0) is None


def test_stop_never_signals_a_pid_it_cannot_tell_apart(tmp_path: Path) -> None:
    import pytest

    from dpo_tui.core.errors import UserError

    # A status naming this very test process as "running" but without the start time the worker records:
    # a stale or edited file must not get a SIGTERM sent to whatever now has that pid.
    write_status(tmp_path, state="running", pid=os.getpid(), created_at=time.time())
    with pytest.raises(UserError, match="start time"):
        stop_job(tmp_path, wait_s=0.1, alive=lambda pid, start: True)
