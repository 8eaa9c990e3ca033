"""A console whose terminal goes away exits at once (issue 14 §1); the runs it shows keep training.

Two ways a terminal is lost: ``tmux kill-session`` or an SSH drop (stdin reads end-of-file or EIO,
with or without a SIGHUP), and a plain SIGHUP. Before, the console lived on with its input thread
spinning on ``read(0) = ""``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from dpo_tui.core.runs import Run, stop
from tests.support.cli import dpo_tui_cmd, log_steps, start_run, wait_for_state, wait_until
from tests.support.gate import StepGate
from tests.support.reliability import record_outcome

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def _tmux(session: str, command: str) -> None:
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True)


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout




def _console_procs(session: str) -> list[psutil.Process]:
    pane = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                              text=True).stdout.split()[0])
    top = psutil.Process(pane)
    procs = [top, *top.children(recursive=True)]
    return [p for p in procs if "dpo" in " ".join(p.cmdline())]


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _lose_terminal(runs_root: Path, command: str, lose, case: str) -> None:
    gate = StepGate(runs_root.parent, 2)  # the run holds mid-way while the console loses its terminal
    path = start_run(runs_root, "--max-steps", "4", env=gate.env)
    session = f"dpo-lost-{uuid.uuid4().hex[:8]}"
    _tmux(session, command)
    try:
        gate.wait_reached(timeout=240)
        wait_until(lambda: path.name[:15] in _screen(session), 60, "the console to list the run")
        procs = _console_procs(session)
        assert procs, "no console process found in the pane"
        lose(session, procs)
        started = time.time()
        wait_until(lambda: all(_gone(p) for p in procs), 2.0, "the console to exit after its terminal went away")
        record_outcome("process", case, "exited", seconds=round(time.time() - started, 2))
        assert Run(path).status().state == "running"
        gate.release()
        assert wait_for_state(path, {"finished", "failed", "crashed", "stopped"}, timeout=120)["state"] == "finished"
        assert log_steps(path) == [1, 2, 3, 4]  # the run trained on to its end
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        if Run(path).raw_status().state in ("queued", "starting", "running", "stopping"):
            stop(Run(path), now=True)


def _kill_session(session: str, _procs: list[psutil.Process]) -> None:
    subprocess.run(["tmux", "kill-session", "-t", session], check=True)


def test_make_run_in_tmux_then_kill_session(runs_root: Path, sample_model: Path) -> None:
    # The console ignores no signal of its own: with SIGHUP ignored (as nohup, or a launcher that
    # swallows it, would leave it) the only sign is stdin's end-of-file/EIO, which must end it too.
    env = f"DPO_TUI_HOME={runs_root.parent} DPO_TUI_RUNS_DIR={runs_root}"
    command = f"trap '' HUP; env {env} make -s -C {REPO} run"
    _lose_terminal(runs_root, f"sh -c \"{command}\"", _kill_session, "console's terminal lost (tmux kill-session, make run)")


def test_sighup_only(runs_root: Path, sample_model: Path) -> None:
    command = " ".join([*dpo_tui_cmd(), "--runs-dir", str(runs_root)])

    def hang_up(_session: str, procs: list[psutil.Process]) -> None:
        for proc in procs:
            os.kill(proc.pid, signal.SIGHUP)

    _lose_terminal(runs_root, command, hang_up, "console got SIGHUP")
