"""Trainer-side reliability: a stop that lands at once, a truncated checkpoint, a garbled status.json.

Real subprocesses on the tiny model; each case is recorded for docs/reliability.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core import events as ev
from dpo_tui.core.runs import Run, lifecycle
from tests.support.cli import log_steps, run_cli, start_run, wait_for_state, wait_until
from tests.support.gate import StepGate
from tests.support.reliability import record_outcome

pytestmark = pytest.mark.slow
TERMINAL = {"finished", "stopped", "failed", "crashed"}


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text(errors="replace"))
    except ValueError:
        return False
    return True


def _terminal_events(path: Path) -> list[str]:
    return [e["type"] for e in ev.read_events(path / "events.jsonl") if e["type"] in ev.TERMINAL_TYPES]


def test_stop_right_after_train_is_a_stop(runs_root: Path, sample_model: Path) -> None:
    # The stop lands while the trainer (or its supervisor) still imports: before any handler it killed
    # the trainer by SIGTERM and the run read as crashed with a `failed` event.
    path = start_run(runs_root, "--max-steps", "10")
    run = Run(path)
    # The moment the supervisor records the trainer's pid, the trainer is still loading its modules.
    wait_until(lambda: run.raw_status().pid, timeout=60, what="the trainer to be spawned")
    lifecycle.stop(run)
    assert run.raw_status().state in ("stopping", "stopped")
    status = wait_for_state(path, TERMINAL, timeout=120)
    assert status["state"] == "stopped", status
    assert _terminal_events(path) == ["stopped"]
    record_outcome("process", "stop right after train", "recovered", steps_lost=0)


def test_truncated_optimizer_in_newest_checkpoint_falls_back(runs_root: Path, sample_model: Path) -> None:
    # A truncated optimizer.pt passed every check (names, weights' header, trainer_state.json): each
    # resume picked it and failed with OSError [Errno 22]. The sizes recorded at save time catch it.
    gate = StepGate(runs_root.parent, 5)
    path = start_run(runs_root, "--max-steps", "8", "--save-fraction", "0.25", env=gate.env)  # saves at 2, 4, 6
    gate.wait_reached()
    run_cli("stop", "--runs-dir", str(runs_root), path.name, check=True)
    assert wait_for_state(path, TERMINAL, timeout=60)["state"] == "stopped"  # and a checkpoint at the stop step
    run = Run(path)
    older, newest = [c for c in run.checkpoints() if c.complete][-2:]
    assert (newest.path / "dpo-tui-manifest.json").exists()
    optimizer = newest.path / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    checkpoints = {c.step: c for c in run.checkpoints()}
    assert not checkpoints[newest.step].complete and "optimizer.pt" in checkpoints[newest.step].reason
    assert run.newest_complete_checkpoint().step == older.step
    proc = run_cli("resume", "--runs-dir", str(runs_root), path.name, check=True)
    assert f"checkpoint-{older.step}" in proc.stdout + proc.stderr
    assert wait_for_state(path, TERMINAL, timeout=300)["state"] == "finished"
    assert log_steps(path) == list(range(1, 9))
    record_outcome("storage", "truncated optimizer.pt in newest checkpoint", "recovered", corrupt_chosen=0,
                   steps_lost=newest.step - older.step)


@pytest.mark.parametrize("damage", ["torn", "garbled"])
def test_damaged_status_json_mid_run_is_rewritten(runs_root: Path, sample_model: Path, damage: str) -> None:
    # A torn or garbled status.json made the trainer's next status write raise: the run failed as
    # `config`, and attach/resume then refused it as unreadable. The heartbeat now writes it back whole.
    gate = StepGate(runs_root.parent, 3)
    path = start_run(runs_root, "--max-steps", "6", env={**gate.env, "DPO_TUI_HEARTBEAT_S": "1"})
    gate.wait_reached()
    status_path = path / "status.json"
    text = status_path.read_text()
    status_path.write_text(text[: len(text) // 2] if damage == "torn" else "\x00garbage{{{")
    # The held trainer's heartbeat writes it back whole, then training goes on to the end.
    wait_until(lambda: _parses(status_path), timeout=30, what="the heartbeat to rewrite status.json")
    gate.release()
    status = wait_for_state(path, TERMINAL, timeout=300)
    assert status["state"] == "finished", status
    written = json.loads(status_path.read_text())
    assert written["state"] == "finished" and written["pid"] and written["supervisor_pid"], written
    assert _terminal_events(path) == ["finished"]
    assert log_steps(path) == list(range(1, 7))
    record_outcome("events", f"status.json {damage} mid-run", "recovered", steps_lost=0)
