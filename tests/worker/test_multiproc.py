"""Two CPU processes over gloo through `accelerate launch`: the same launcher multi-GPU runs use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.events import read_events
from dpo_tui.core.runs import Run
from tests.support.cli import log_steps, run_cli, start_run, wait_for_state
from tests.support.gate import StepGate

pytestmark = pytest.mark.slow


def test_two_processes_stop_resume_finish(runs_root: Path, sample_model: Path) -> None:
    # Rank 0 holds after step 3; rank 1 waits for it in the step's stop all-reduce, so both stop at 3.
    gate = StepGate(runs_root.parent, 3)
    path = start_run(runs_root, "--nproc", "2", "--max-steps", "6", "--per-device-batch-size", "4", env=gate.env)
    gate.wait_reached(timeout=240)
    config = json.loads((path / "accelerate_config.json").read_text())  # written by the supervisor at start
    assert config["num_processes"] == 2 and config["distributed_type"] == "MULTI_GPU"
    assert 1024 < config["main_process_port"] < 65536  # its own rendezvous port, not accelerate's shared 29500
    run_cli("stop", "--runs-dir", str(runs_root), path.name, check=True)
    status = wait_for_state(path, {"stopped", "failed", "crashed"}, timeout=120)
    assert status["state"] == "stopped", status
    stopped_at = status["step"]
    assert stopped_at == 3
    run = Run(path)
    assert run.newest_complete_checkpoint().step == stopped_at  # every rank stopped at the same boundary
    run_cli("resume", "--runs-dir", str(runs_root), path.name, check=True)
    assert wait_for_state(path, {"finished", "failed", "crashed", "stopped"}, timeout=300)["state"] == "finished"
    events = read_events(path / "events.jsonl")
    started = [e for e in events if e["type"] == "started"]
    assert [e["world_size"] for e in started] == [2, 2]
    assert log_steps(path) == list(range(1, 7))
    # One writer: no step is logged twice by two ranks.
    raw = [e["step"] for e in events if e["type"] == "log" and not e.get("summary")]
    assert raw == list(range(1, 7))
    assert (run.adapter_dir / "COMPLETE").exists()


def test_strategy_without_its_library_says_what_to_install(runs_root: Path) -> None:
    proc = run_cli("train", "--runs-dir", str(runs_root), "--nproc", "2", "--strategy", "zero2")
    assert proc.returncode == 2
    assert "DeepSpeed" in proc.stderr and "dpo-tui[deepspeed]" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(runs_root.iterdir()) == []  # nothing created
