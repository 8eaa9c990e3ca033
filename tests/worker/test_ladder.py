"""A real β ladder through the runs root's queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.runs import Run
from tests.support.cli import run_cli, wait_for_state
from tests.support.gate import StepGate

pytestmark = pytest.mark.slow


def test_two_beta_ladder_runs_one_after_the_other(runs_root: Path, sample_model: Path) -> None:
    # The launching command returns at once; the queue lives on in the detached supervisors.
    gate = StepGate(runs_root.parent, 1)  # the first rung holds while the queue is checked
    proc = run_cli("ladder", "--runs-dir", str(runs_root), "--betas", "0.05,0.5", "--max-steps", "2", "--group", "lad",
                   env=gate.env, check=True)
    ids = proc.stdout.split()[:2]
    first, second = (Run(runs_root / i) for i in ids)
    assert first.config().beta == 0.05 and second.config().beta == 0.5
    assert first.config().seed == second.config().seed
    assert first.config().model_dump(exclude={"beta"}) == second.config().model_dump(exclude={"beta"})
    # While the first trains, the second waits with a visible position.
    gate.wait_reached(timeout=120)
    assert first.status().state == "running"
    status = second.status()
    assert status.state == "queued" and "position 1" in status.phase
    gate.release()
    wait_for_state(first.path, {"finished"}, timeout=300)
    wait_for_state(second.path, {"finished"}, timeout=300)
    assert second.raw_status().started_at >= first.raw_status().ended_at - 0.5
    rows = json.loads(run_cli("runs", "--runs-dir", str(runs_root), "--json", check=True).stdout)
    assert {r["group"] for r in rows} == {"lad"}
    doc = json.loads(run_cli("compare", "--runs-dir", str(runs_root), "--group", "lad", "--json", check=True).stdout)
    assert doc["diff"]["beta"] == [0.05, 0.5]


def test_ladder_cancel_stops_running_and_cancels_queued(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 1)  # the first rung holds until the cancel stops it
    proc = run_cli("ladder", "--runs-dir", str(runs_root), "--betas", "0.1,0.2,0.3", "--max-steps", "4", "--group", "c",
                   env=gate.env, check=True)
    ids = proc.stdout.split()[:3]
    gate.wait_reached(timeout=180)
    run_cli("ladder", "--runs-dir", str(runs_root), "--cancel", "c", check=True)
    assert Run(runs_root / ids[0]).raw_status().started_at is not None  # the first created is the first to run
    states = [wait_for_state(runs_root / i, {"stopped", "finished", "failed", "crashed"}, timeout=120) for i in ids]
    assert [s["state"] for s in states] == ["stopped", "stopped", "stopped"]
    assert states[1]["kind"] == "cancelled" and states[2]["kind"] == "cancelled"
    assert not (runs_root / ids[1] / "trainer.log").exists()  # never started
