"""The installed ``dpo-tui`` in a real terminal (tmux): launch a run, quit, reopen from a new session
("another SSH login"), and find the run still there; its monitor rebuilds the history."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dpo_tui.core import paths

REPO = Path(__file__).resolve().parents[2]
SAMPLE_MODEL = paths.sample_model_dir()  # DPO_TUI_SAMPLE_DATA can point elsewhere

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not (SAMPLE_MODEL / "config.json").exists(), reason="sample_data/tiny-chat is not built"),
]


def dpo_tui() -> str:
    script = Path(sys.executable).with_name("dpo-tui")
    return str(script) if script.exists() else f"{sys.executable} -m dpo_tui"


class Tmux:
    """One detached tmux session running a command; read it with capture-pane, drive it with send-keys."""

    def __init__(self, command: str, env: dict[str, str], width: int = 100, height: int = 30) -> None:
        self.name = f"dpo-tui-e2e-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), f"env {exports} TERM=xterm-256color {command}"],
            check=True,
        )

    def screen(self) -> str:
        proc = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return proc.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.time() + timeout
        screen = ""
        while time.time() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def events_of(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_state(run_dir: Path) -> str:
    from dpo_tui.core.runs import Run

    return Run(run_dir).status().state


def test_launch_quit_reopen_and_see_the_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"DPO_TUI_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if os.environ.get("DPO_TUI_SAMPLE_DATA"):
        env["DPO_TUI_SAMPLE_DATA"] = os.environ["DPO_TUI_SAMPLE_DATA"]
    first = Tmux(dpo_tui(), env)
    second = None
    run_dir = None
    try:
        first.wait_for("tiny-chat (sample)", 60)
        first.wait_for("Choose", 10)
        first.keys("Enter")  # the model
        first.wait_for("usable", 60)
        first.keys("C-n")  # the sample dataset is preselected
        first.wait_for("ready to launch", 30)
        first.keys("C-r")
        first.wait_for("step ", 60)  # the monitor's progress line
        runs = [p for p in (home / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
        assert len(runs) == 1
        run_dir = runs[0]
        # Quitting the console never stops a run.
        first.keys("C-q")
        deadline = time.time() + 20
        while first.alive() and time.time() < deadline:
            time.sleep(0.2)
        assert not first.alive(), "ctrl+q did not quit"
        time.sleep(1.0)
        assert run_state(run_dir) in ("queued", "starting", "running", "finished"), run_state(run_dir)

        # Another login: a new terminal opens on the runs overview and finds the run (this time
        # the root is named with --runs-dir instead of $DPO_TUI_HOME: both must reach it).
        other_env = {k: v for k, v in env.items() if k != "DPO_TUI_HOME"}
        second = Tmux(f"{dpo_tui()} --runs-dir {home / 'runs'}", other_env)
        second.wait_for(run_dir.name[:30], 60)
        # A capture can land between the terminal's writes of one frame: wait for the rest, don't assert on it.
        second.wait_for("Runs in", 10)
        second.keys("Enter")
        screen = second.wait_for("reward margin", 30)
        assert run_dir.name in screen
        # The reopened monitor follows the run live: its first logged step shows up.
        deadline = time.time() + 180
        while time.time() < deadline and not any(e.get("type") == "log" for e in events_of(run_dir)):
            time.sleep(0.5)
        assert any(e.get("type") == "log" for e in events_of(run_dir)), (run_dir / "trainer.log").read_text()[-2000:]
        second.wait_for("/30 ", 20)  # the progress line: step N/30 (the sample preset's 30 steps)
        second.keys("C-q")
    finally:
        first.close()
        if second is not None:
            second.close()
        if run_dir is not None and run_state(run_dir) in ("queued", "starting", "running", "stopping"):
            from dpo_tui.core import runs

            runs.stop(runs.Run(run_dir), now=True)
