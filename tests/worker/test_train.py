"""The real trainer on the tiny sample model, in real detached subprocesses.

Covers issue 2 §5: a run to the end; stop then resume with a continuous step sequence; SIGKILL
of the process group → crashed → resume → finished; an incomplete checkpoint is skipped; the
run outlives its launcher's session (SIGHUP); --follow detaches on SIGINT. The trainer-alone SIGKILL
and NaN → failed/nan cases live in tests/faults/test_process_faults.py, which runs them with a resume.

A test acts mid-run by holding the trainer at a known step (tests/support/gate.py), not by slowing
every step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dpo_tui.core.events import read_events
from dpo_tui.core.runs import Run
from tests.support.cli import dpo_tui_cmd, log_steps, run_cli, start_run, wait_for_state, wait_until
from tests.support.gate import StepGate
from tests.support.reliability import record_outcome

pytestmark = pytest.mark.slow


def test_run_to_the_end(trained_run: Run) -> None:
    events = read_events(trained_run.events_path)
    types = [e["type"] for e in events]
    assert types.count("started") == 1
    started = next(e for e in events if e["type"] == "started")
    assert started["max_steps"] == 30 and started["examples"] >= 300
    assert started["world_size"] == 1 and started["device"] == "cpu"
    assert set(started["versions"]) >= {"torch", "transformers", "trl", "peft"}
    assert [t for t in types if t in ("finished", "stopped", "failed")] == ["finished"]
    assert types[-1] == "finished"
    assert log_steps(trained_run.path) == list(range(1, 31))
    logs = [e for e in events if e["type"] == "log" and not e.get("summary")]
    for key in ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen", "learning_rate", "grad_norm"):
        assert key in logs[-1]["metrics"], key
    assert all(e["nonfinite"] == [] for e in logs)
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [6, 12, 18, 24]
    adapter = trained_run.adapter_dir
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert (adapter / "COMPLETE").exists()
    assert not (trained_run.path / "adapter.partial").exists()
    status = trained_run.status()
    assert status.state == "finished" and status.exit_code == 0 and status.step == 30
    # The margin grows: the sample data's lesson is learnable.
    margins = [e["metrics"]["rewards/margins"] for e in logs]
    assert sum(margins[-5:]) / 5 > sum(margins[:5]) / 5


def test_trainer_log_has_one_readable_line_per_step(trained_run: Run) -> None:
    # transformers' PrinterCallback (a dict repr per step) is replaced by log_line; events.jsonl keeps every metric.
    lines = trained_run.log_path.read_text().splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert len([line for line in steps if " eval " not in line]) == 30
    assert steps[-1].startswith("step 30/30  loss ") and "  margin " in steps[-1] and "  acc " in steps[-1]
    assert any(line.startswith("done: ") and "steps/s" in line for line in lines)
    assert not any(line.startswith("{'") for line in lines), "the default dict printer is still on"


def test_log_line_formats() -> None:
    from dpo_tui.worker.train import log_line

    logs = {"loss": 0.61987, "rewards/margins": 0.15243, "rewards/accuracies": 1.0, "learning_rate": 1.667e-05, "epoch": 0.5}
    assert log_line(30, 30, logs) == "step 30/30  loss 0.6199  margin 0.1524  acc 1.00  lr 1.67e-05"
    assert log_line(6, None, {"eval_loss": 0.69, "eval_rewards/margins": 0.01}) == "step 6  eval  loss 0.69  margin 0.01"
    summary = log_line(30, 30, {"train_runtime": 5.151, "train_steps_per_second": 5.824, "train_loss": 0.6514})
    assert summary == "done: 5.2 s, 5.82 steps/s, mean train loss 0.6514"


def test_runs_json_lists_the_run(trained_run: Run, session_runs_root: Path) -> None:
    proc = run_cli("runs", "--runs-dir", str(session_runs_root), "--json", check=True)
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    row = rows[trained_run.id]
    assert row["state"] == "finished" and row["step"] == 30 and row["max_steps"] == 30
    assert row["beta"] == 0.1 and row["path"] == str(trained_run.path)


def test_stop_then_resume_continues_without_gaps(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 4)
    path = start_run(runs_root, "--max-steps", "8", env=gate.env)
    gate.wait_reached()
    t0 = time.time()
    proc = run_cli("stop", "--runs-dir", str(runs_root), path.name, check=True)  # the stop alone ends the hold
    stop_latency = time.time() - t0
    status = wait_for_state(path, {"stopped"}, timeout=60)
    stopped_at = status["step"]
    assert stopped_at == 4, proc.stdout
    assert stop_latency < 30
    run = Run(path)
    assert run.newest_complete_checkpoint().step == stopped_at  # saved at the exact stop step
    terminal = [e for e in read_events(run.events_path) if e["type"] in ("finished", "stopped", "failed")]
    assert [e["type"] for e in terminal] == ["stopped"] and terminal[0]["checkpoint"] == f"checkpoints/checkpoint-{stopped_at}"

    proc = run_cli("resume", "--runs-dir", str(runs_root), path.name, check=True)
    assert f"checkpoint-{stopped_at}" in proc.stdout
    wait_for_state(path, {"finished"}, timeout=300)
    raw = [e["step"] for e in read_events(run.events_path) if e["type"] == "log" and not e.get("summary")]
    assert raw == list(range(1, 9)), "a graceful stop loses and repeats no step"
    assert log_steps(path) == list(range(1, 9))
    assert run.status().attempt == 2
    record_outcome("process", "SIGTERM (Stop)", "recovered", stop_latency_s=round(stop_latency, 2), steps_lost=0, corrupt_chosen=0)


def test_sigkill_of_the_group_is_crashed_then_resumes(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 6)
    path = start_run(runs_root, "--max-steps", "16", "--save-fraction", "0.25", env=gate.env)  # saves at 4, 8, 12
    gate.wait_reached()  # step 6 ran; it is neither logged nor saved yet
    run = Run(path)
    wait_for_state(path, {"running"})
    status = run.raw_status()
    os.killpg(status.pgid, signal.SIGKILL)
    crashed = wait_for_state(path, {"crashed"}, timeout=30)
    assert "resume" in crashed["message"]
    # A half-written newer checkpoint (no trainer_state.json) must be skipped.
    fake = run.checkpoints_dir / "checkpoint-15"
    fake.mkdir()
    (fake / "adapter_model.safetensors").write_bytes(b"\x00" * 4)
    ckpt = run.newest_complete_checkpoint()
    assert ckpt is not None and ckpt.step == 4
    killed_at = max(log_steps(path))
    assert 0 <= killed_at - ckpt.step <= 4 + 1  # lost at most one save interval (plus the step in flight)
    proc = run_cli("resume", "--runs-dir", str(runs_root), path.name, check=True)
    assert f"checkpoint-{ckpt.step}" in proc.stdout
    wait_for_state(path, {"finished"}, timeout=300)
    assert log_steps(path) == list(range(1, 17))


def test_run_outlives_the_launching_session(runs_root: Path, sample_model: Path) -> None:
    # A launcher in its own session (like an SSH login shell) starts a run, then the session hangs up.
    gate = StepGate(runs_root.parent, 2)
    id_file = runs_root.parent / "id.txt"
    script = f"{' '.join(dpo_tui_cmd())} train --runs-dir {runs_root} --max-steps 4 > {id_file}; sleep 60"
    launcher = subprocess.Popen(["bash", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                                env={**os.environ, **gate.env})
    wait_until(lambda: id_file.exists() and id_file.read_text().strip(), timeout=60, what="the launcher to print the run id")
    path = runs_root / id_file.read_text().strip()
    gate.wait_reached()  # the session hangs up while the run is mid-way
    os.killpg(launcher.pid, signal.SIGHUP)
    launcher.wait(timeout=10)
    gate.release()
    status = wait_for_state(path, {"finished", "failed", "crashed", "stopped"}, timeout=300)
    assert status["state"] == "finished"


def test_follow_detaches_on_sigint(runs_root: Path, sample_model: Path) -> None:
    gate = StepGate(runs_root.parent, 2)
    proc = subprocess.Popen(
        [*dpo_tui_cmd(), "train", "--runs-dir", str(runs_root), "--max-steps", "4", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **gate.env}, stdin=subprocess.DEVNULL,
    )
    run_id = proc.stdout.readline().strip()
    path = runs_root / run_id
    gate.wait_reached()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Detached" in err and f"dpo-tui attach {run_id}" in err
    assert Run(path).status().state == "running"  # held at step 2: the detach left it training
    gate.release()
    assert wait_for_state(path, {"finished", "failed", "crashed", "stopped"})["state"] == "finished"
