"""Shared fixtures. One real sample run is trained once per session and reused (keeps the suite quick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_MODEL = REPO / "sample_data" / "tiny-chat"
SAMPLE_PREFS = REPO / "sample_data" / "prefs" / "train.jsonl"


def dpo_tui_cmd() -> list[str]:
    """The installed `dpo-tui` of this interpreter's environment (falls back to `python -m dpo_tui`)."""
    script = Path(sys.executable).with_name("dpo-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dpo_tui"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*dpo_tui_cmd(), *args], capture_output=True, text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"dpo-tui {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def wait_for_state(run_path: Path, states: set[str], timeout: float = 300) -> dict:
    """Poll a run's status (through the core, which reconciles dead processes) until it reaches a state."""
    from dpo_tui.core.runs import Run

    run = Run(run_path)
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = run.status()
        if status.state in states:
            return status.model_dump()
        time.sleep(0.25)
    log = (run_path / "trainer.log").read_text(errors="replace")[-3000:] if (run_path / "trainer.log").exists() else ""
    raise AssertionError(f"run {run_path.name} did not reach {states} in {timeout}s (last: {status})\n{log}")


def wait_for_step(run_path: Path, step: int, timeout: float = 300) -> None:
    from dpo_tui.core.events import read_events

    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e.get("type") == "log" and (e.get("step") or 0) >= step for e in read_events(run_path / "events.jsonl")):
            return
        time.sleep(0.1)
    raise AssertionError(f"run {run_path.name} did not reach step {step}")


def start_run(runs_root: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    proc = run_cli("train", "--runs-dir", str(runs_root), *args, env=env, check=True)
    run_id = proc.stdout.strip().splitlines()[0]
    return runs_root / run_id


def log_steps(run_path: Path) -> list[int]:
    """Logged steps after folding resumed attempts (what a monitor shows)."""
    from dpo_tui.core.events import RunHistory, read_events

    history = RunHistory()
    history.apply(read_events(run_path / "events.jsonl"))
    return [step for step, _ in history.series.get("loss", [])]


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def sample_model() -> Path:
    if not (SAMPLE_MODEL / "config.json").exists():
        pytest.fail("sample_data/tiny-chat is missing; run `make sample`")
    return SAMPLE_MODEL


@pytest.fixture(scope="session")
def session_runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session-runs")


@pytest.fixture(scope="session")
def trained_run(session_runs_root: Path, sample_model: Path):
    """A real, finished sample run (the default sample experiment), trained once per test session."""
    from dpo_tui.core.runs import Run

    path = start_run(session_runs_root, "--name", "shared")
    wait_for_state(path, {"finished", "failed", "crashed", "stopped"}, timeout=600)
    run = Run(path)
    status = run.status()
    assert status.state == "finished", f"shared sample run ended {status.state}: {status.message}\n" + run.log_path.read_text()[-3000:]
    return run


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
