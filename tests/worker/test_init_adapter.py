"""Round two on the real trainer: a short run starting from the shared sample run's adapter, stopped and resumed.

One run covers what the worker must do with ``init_adapter``: load the previous adapter trainable
(its rank, not the flag's), keep the base as the reference (so the first step already shows the
round-one adapter's margin instead of TRL's ln 2 against a copy of itself), record the source in
``config.json`` and the ``started`` events, and resume from its own checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dpo_tui.core.events import read_events
from dpo_tui.core.runs import Run
from tests.support.cli import log_steps, run_cli, wait_for_state
from tests.support.gate import StepGate

pytestmark = pytest.mark.slow


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_round_two_starts_from_the_adapter_against_the_base(trained_run: Run, runs_root: Path) -> None:
    gate = StepGate(runs_root.parent, 2)
    proc = run_cli("train", "--runs-dir", str(runs_root), "--init-adapter", str(trained_run.path), "--lora-rank", "16",
                   "--max-steps", "3", "--save-fraction", "0.5", env=gate.env, check=True)
    assert "lora_rank 16 is ignored; the adapter's 8 is used" in proc.stderr
    path = runs_root / proc.stdout.strip().splitlines()[0]
    run = Run(path)
    config = json.loads(run.config_path.read_text())
    assert config["init_adapter"] == str(trained_run.adapter_dir) and config["init_adapter_run"] == trained_run.id
    assert config["lora_rank"] == 8

    gate.wait_reached()
    run_cli("stop", "--runs-dir", str(runs_root), path.name, check=True)
    assert wait_for_state(path, {"stopped", "failed", "crashed"}, timeout=120)["state"] == "stopped", run.log_path.read_text()[-2000:]
    ckpt = run.newest_complete_checkpoint()
    assert ckpt is not None and ckpt.step == 2
    assert not (ckpt.path / "ref").exists(), "TRL's frozen copy of the starting adapter is not the reference"
    run_cli("resume", "--runs-dir", str(runs_root), path.name, check=True)
    status = wait_for_state(path, {"finished", "failed", "crashed"}, timeout=300)
    assert status["state"] == "finished", run.log_path.read_text()[-3000:]
    assert log_steps(path) == [1, 2, 3]

    events = read_events(run.events_path)
    started = [e for e in events if e["type"] == "started"]
    assert len(started) == 2 and all(e["init_adapter"] == str(trained_run.adapter_dir) for e in started)
    assert all(e["init_adapter_run"] == trained_run.id for e in started)
    # The reference is the base with the adapter disabled: before any update of round two the policy is
    # the round-one adapter, already preferring the chosen answers (a copy as reference would log ln 2, margin 0).
    first = next(e["metrics"] for e in events if e["type"] == "log" and e.get("step") == 1)
    assert first["rewards/margins"] > 0.01 and first["loss"] < math.log(2) - 0.005, first

    # The trained adapter is the source adapter moved by three small steps: same layers and shapes, close, not equal.
    before, after = adapter_tensors(trained_run.adapter_dir), adapter_tensors(run.adapter_dir)
    assert before.keys() == after.keys() and all(before[k].shape == after[k].shape for k in before)
    moved = sum(float((after[k].float() - before[k].float()).norm() ** 2) for k in before) ** 0.5
    size = sum(float(before[k].float().norm() ** 2) for k in before) ** 0.5
    assert 0 < moved < 0.5 * size, (moved, size)
