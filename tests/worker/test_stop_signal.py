"""Stop signals: the trainer's handler survives a burst of SIGTERMs, and Stop signals each process group once.

A CI run once hung a graceful stop for 50 s (until the CLI escalated to SIGKILL) because the handler
called ``threading.Event.set``, which takes a lock: a second SIGTERM interrupted the first handler inside
that lock and the nested handler waited forever on its own thread's lock. These tests use real processes
and real signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from dpo_tui.core import runs
from dpo_tui.core.runs import RunStatus, process_start_time
from tests.support.cli import REPO

# A process that installs the trainer's stop handler, says "ready", and reports whether it saw the stop.
CHILD = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from dpo_tui.worker.train import StopRequested
stop = StopRequested()
stop.install()
print("ready", flush=True)
deadline = time.time() + 10
while not stop.requested and time.time() < deadline:
    time.sleep(0.0001)
print("stopped" if stop.requested else "missed", stop.signal_name, flush=True)
"""


def test_stop_handler_survives_a_burst_of_signals() -> None:
    # Signals spaced a few microseconds apart land while the previous handler still runs; with a lock
    # in the handler this hung 18 of 20 children. Five children, each given 200 signals.
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for _ in range(200):
            os.kill(child.pid, signal.SIGTERM)
            sum(range(100))  # a few microseconds between signals
        try:
            out, _ = child.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail("the stop handler deadlocked under a burst of SIGTERMs")
        assert out.split() == ["stopped", "SIGTERM"], out


def test_stop_signals_a_shared_process_group_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The supervisor and the trainer share one group: Stop must send it one SIGTERM, not one per pid.
    # The leader (the supervisor's part) starts a new session and a member in its group (the trainer's).
    spawner = (
        "import subprocess, sys, time; m = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print(m.pid, flush=True); time.sleep(30)"
    )
    leader = subprocess.Popen([sys.executable, "-c", spawner], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None
    member_pid = int(leader.stdout.readline())
    try:
        status = RunStatus(
            state="running", supervisor_pid=leader.pid, supervisor_start=process_start_time(leader.pid),
            pid=member_pid, pid_start=process_start_time(member_pid),
        )
        sent: list[tuple[int, int]] = []
        real_killpg = os.killpg

        def recording_killpg(group: int, sig: int) -> None:  # records, then really signals
            sent.append((group, sig))
            real_killpg(group, sig)

        monkeypatch.setattr(runs.os, "killpg", recording_killpg)
        assert runs._signal_group(status, signal.SIGTERM)
        assert sent == [(leader.pid, signal.SIGTERM)]
        assert leader.wait(timeout=5) == -signal.SIGTERM
        deadline = time.time() + 5
        while runs.process_alive(member_pid) and time.time() < deadline:
            time.sleep(0.02)
        assert not runs.process_alive(member_pid)  # the group's other process got it too
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
