"""Run folders without the trainer: creation, listing, crash reconciliation, checkpoint choice, atomic writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpo_tui.core import runs
from dpo_tui.core.config import RunConfig
from dpo_tui.core.errors import UserError
from dpo_tui.core.fsutil import atomic_write_json


def _config(**kw) -> RunConfig:
    return RunConfig(**kw)


def _safetensors(path: Path, truncate: bool = False) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 16
    path.write_bytes(data[:-5] if truncate else data)


def _checkpoint(run: runs.Run, step: int, *, state: bool = True, truncate: bool = False, incomplete_marker: bool = False) -> Path:
    folder = run.checkpoints_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    _safetensors(folder / "adapter_model.safetensors", truncate=truncate)
    (folder / "optimizer.pt").write_bytes(b"x")
    (folder / "scheduler.pt").write_bytes(b"x")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if incomplete_marker:
        (folder / "checkpoint-is-incomplete.txt").write_text("")
    return folder


def test_create_run_writes_config_and_queued_status(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path / "runs", _config(beta=0.25, name="try"))
    assert run.id.endswith("-tiny-chat-b0.25-try")
    assert run.config().beta == 0.25
    assert run.raw_status().state == "queued"
    # same second, same settings: never overwritten
    other = runs.create_run(tmp_path / "runs", _config(beta=0.25, name="try"), run_id=run.id)
    assert other.id == f"{run.id}-2"


def test_checkpoint_choice_skips_incomplete_and_corrupt(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _config())
    _checkpoint(run, 10)
    _checkpoint(run, 20)
    _checkpoint(run, 30, state=False)  # killed before trainer_state.json
    _checkpoint(run, 40, truncate=True)  # half-written weights
    _checkpoint(run, 50, incomplete_marker=True)
    chosen = run.newest_complete_checkpoint()
    assert chosen is not None and chosen.step == 20
    reasons = {c.step: c.reason for c in run.checkpoints() if not c.complete}
    assert reasons == {30: "no trainer_state.json", 40: reasons[40], 50: "marked incomplete"}
    assert "truncated" in reasons[40] or "invalid header" in reasons[40]


def test_active_run_with_dead_processes_is_crashed(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _config())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.update_status(state="running", pid=dead.pid, supervisor_pid=dead.pid, host=runs.host_name())
    _checkpoint(run, 5)
    status = run.status()
    assert status.state == "crashed"
    assert "checkpoint-5" in status.message
    assert run.raw_status().state == "crashed"  # persisted


def test_pid_reuse_is_not_mistaken_for_a_live_run(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _config())
    # Our own pid is alive, but with another start time it is somebody else's process.
    run.update_status(state="running", pid=os.getpid(), pid_start=1.0, host=runs.host_name())
    assert run.status().state == "crashed"


def test_status_json_deleted_mid_run_is_rebuilt_from_events(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _config())
    with open(run.events_path, "w") as fh:
        fh.write(json.dumps({"type": "started", "max_steps": 9, "pid": os.getpid(), "attempt": 1}) + "\n")
        fh.write(json.dumps({"type": "log", "step": 4, "metrics": {"loss": 0.5}}) + "\n")
    run.status_path.unlink()
    status = run.status()
    assert status.state == "running" and status.step == 4 and status.max_steps == 9


def test_heartbeat_after_status_json_was_deleted_keeps_the_run_running(tmp_path: Path) -> None:
    """The trainer's heartbeat rewrites status.json; it must not resurrect it as a pid-less ``queued``."""
    run = runs.create_run(tmp_path, _config())
    started = {"type": "started", "max_steps": 9, "pid": os.getpid(), "pid_start": runs.process_start_time(os.getpid()),
               "host": runs.host_name(), "attempt": 1}
    with open(run.events_path, "w") as fh:
        fh.write(json.dumps(started) + "\n")
        fh.write(json.dumps({"type": "log", "step": 4, "metrics": {"loss": 0.5}}) + "\n")
    run.status_path.unlink()
    run.update_status(heartbeat=time.time())  # what the trainer does every few seconds
    written = json.loads(run.status_path.read_text())
    assert written["state"] == "running" and written["pid"] == os.getpid() and written["step"] == 4
    assert run.status().state == "running"


def test_list_runs_marks_broken_folders_unreadable(tmp_path: Path) -> None:
    good = runs.create_run(tmp_path, _config())
    broken = tmp_path / "20990101-000000-broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    half = tmp_path / "20990101-000001-half"
    half.mkdir()
    (half / "status.json").write_text(json.dumps({"state": "finished"}))
    rows = {r.id: r for r in runs.list_runs(tmp_path)}
    assert rows[good.id].state == "queued"
    assert rows[broken.name].state == "unreadable" and "config.json" in rows[broken.name].error
    assert rows[half.name].state == "unreadable"
    assert list(rows)[0] == half.name  # newest first


def test_find_run_by_prefix_and_errors(tmp_path: Path) -> None:
    a = runs.create_run(tmp_path, _config(name="alpha"))
    assert runs.find_run(tmp_path, a.id[:-2]).id == a.id
    with pytest.raises(UserError, match="No run 'nope'"):
        runs.find_run(tmp_path, "nope")


def test_resume_rules(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _config())
    run.update_status(state="finished")
    with pytest.raises(UserError, match="already finished"):
        runs.prepare_resume(run)
    run.update_status(state="stopped")
    _checkpoint(run, 3, state=False)
    with pytest.raises(UserError, match="no complete checkpoint.*checkpoint-3 \\(no trainer_state.json\\)"):
        runs.prepare_resume(run)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})  # refused before anything is replaced
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_delete_refuses_a_live_run(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _config())
    run.update_status(state="running", pid=os.getpid(), pid_start=runs.process_start_time(os.getpid()), host=runs.host_name())
    with pytest.raises(UserError, match="stop it before deleting"):
        runs.delete(run)
    run.update_status(state="stopped")
    runs.delete(run)
    assert not run.path.exists()


def test_listing_a_thousand_runs_is_fast(tmp_path: Path) -> None:
    template = runs.create_run(tmp_path, _config())
    config_text = template.config_path.read_text()
    status_text = template.status_path.read_text()
    for i in range(1000):
        folder = tmp_path / f"20260101-{i:06d}-m-b0.1"
        folder.mkdir()
        (folder / "config.json").write_text(config_text)
        (folder / "status.json").write_text(status_text.replace('"queued"', '"finished"'))
    t0 = time.perf_counter()
    rows = runs.list_runs(tmp_path)
    elapsed = time.perf_counter() - t0
    assert len(rows) == 1001
    assert elapsed < 5  # the budget (1 s) is measured in bench/; this only guards against pathologies


def test_run_lister_rereads_only_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ended = runs.create_run(tmp_path, _config(name="ended"))
    ended.update_status(state="finished", step=5, max_steps=5)
    active = runs.create_run(tmp_path, _config(name="active"))
    read: list[str] = []
    real = runs.summarize

    def counting(path: Path, reconcile: bool = True) -> runs.RunSummary:
        read.append(path.name)
        return real(path, reconcile)

    from dpo_tui.core.runs import listing

    monkeypatch.setattr(listing, "summarize", counting)
    lister = runs.RunLister()
    first = {s.id: s.state for s in lister.list(tmp_path, reconcile=False)}
    assert first == {ended.id: "finished", active.id: "queued"} and sorted(read) == sorted([ended.id, active.id])
    read.clear()
    lister.list(tmp_path, reconcile=False)
    assert read == [active.id]  # the ended run's files did not change: its row is kept
    time.sleep(0.01)
    ended.update_status(message="edited")  # any write to its files makes it read again
    read.clear()
    rows = {s.id: s for s in lister.list(tmp_path, reconcile=False)}
    assert sorted(read) == sorted([ended.id, active.id]) and rows[ended.id].message == "edited"
    runs.delete(ended)
    assert [s.id for s in lister.list(tmp_path, reconcile=False)] == [active.id]


def _stopped_gpu_run(tmp_path: Path, world: int, **config) -> runs.Run:
    run = runs.create_run(tmp_path, _config(nproc=world, **config))
    with open(run.events_path, "w") as fh:
        fh.write(json.dumps({"type": "started", "attempt": 1, "device": "cuda", "world_size": world, "max_steps": 9}) + "\n")
        fh.write(json.dumps({"type": "warning", "code": "started"}) + "\n")  # matches the byte search, is no start
        fh.write(json.dumps({"type": "stopped", "step": 4}) + "\n")
    run.update_status(state="stopped", step=4)
    _checkpoint(run, 4)
    return run


def test_resume_refuses_when_fewer_gpus_are_visible_than_the_run_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _stopped_gpu_run(tmp_path, 2, strategy="zero2")
    assert run.last_started_event()["world_size"] == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(UserError) as err:
        runs.prepare_resume(run)
    assert "trained on 2 GPUs (2 processes, zero2), but 1 GPU is visible now" in err.value.summary
    assert "CUDA_VISIBLE_DEVICES" in err.value.hint
    assert run.raw_status().state == "stopped"  # nothing changed
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert runs.prepare_resume(run).step == 4


def test_resume_refuses_a_named_gpu_that_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _stopped_gpu_run(tmp_path, 1, gpus=[3])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(UserError, match=r"asks for GPU 3, but only GPUs 0,1 are visible here"):
        runs.prepare_resume(run)


def test_a_cpu_run_resumes_without_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _stopped_gpu_run(tmp_path, 2)
    run.events_path.write_text(json.dumps({"type": "started", "device": "cpu", "world_size": 2}) + "\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert runs.prepare_resume(run).step == 4


@pytest.mark.parametrize(
    ("config", "visible", "message"),
    [
        ({"gpus": [0]}, 0, "asks for GPU 0, but no GPU is visible here"),
        ({"gpus": [1, 2], "nproc": 2}, 2, "asks for GPU 2, but only GPUs 0,1 are visible here"),
        ({"nproc": 4}, 2, "needs 4 processes, one per GPU, but 2 GPUs are visible here"),
    ],
)
def test_preflight_refuses_gpus_that_are_not_there(config: dict, visible: int, message: str) -> None:
    from dpo_tui.core.preflight import check_devices

    with pytest.raises(UserError, match=message):
        check_devices(_config(**config), visible)


def test_preflight_accepts_cpu_processes_and_present_gpus() -> None:
    from dpo_tui.core.preflight import check_devices

    check_devices(_config(nproc=2), 0)  # gloo on the CPU
    check_devices(_config(nproc=2, gpus=[0, 1]), 2)
    check_devices(_config(nproc=1), 8)


def test_one_process_zero3_offload_needs_deepspeed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZeRO/FSDP run through accelerate even with one process (offload fits bigger models on one GPU)."""
    import importlib.util

    from dpo_tui.core.preflight import check_strategy

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(UserError, match="needs DeepSpeed"):
        check_strategy(_config(strategy="zero3-offload"))
    check_strategy(_config(strategy="ddp"))


@pytest.mark.parametrize(
    ("env", "count", "ids"),
    [(None, 4, [0, 1, 2, 3]), ("2,3", 4, [2, 3]), ("3,1", 4, [3, 1]), ("1,9,2", 4, [1]), ("-1", 4, []), ("", 4, []),
     ("0,1", None, [0, 1]), ("GPU-aa,GPU-bb", 4, [0, 1]), (None, None, [])],
)
def test_cuda_visible_devices_narrows_nvml_indices(monkeypatch: pytest.MonkeyPatch, env, count, ids) -> None:
    """GPUs are numbered as NVML does everywhere; CUDA_VISIBLE_DEVICES only removes some (CUDA stops at the first bad entry)."""
    from dpo_tui.core.gpus import cuda_visible_ids
    from dpo_tui.core.preflight import check_devices, describe_ids

    if env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    assert cuda_visible_ids(count) == ids
    if ids == [2, 3]:
        with pytest.raises(UserError, match="asks for GPU 0, but only GPUs 2,3 are visible here"):
            check_devices(_config(gpus=[0]), ids)
        check_devices(_config(gpus=[3]), ids)
    assert describe_ids([0, 1, 2, 3]) == "0–3" and describe_ids([4, 5]) == "4,5"


@pytest.mark.parametrize(
    ("env", "ids"),
    [("GPU-cc,GPU-aa", [2, 0]), ("GPU-cc33", [2]), ("GPU-cc,GPU-zz,GPU-aa", [2]), ("GPU-a", []), ("1,GPU-dd", [1, 3]),
     ("MIG-0f1e", [0])],
)
def test_cuda_visible_uuids_map_through_nvml(monkeypatch: pytest.MonkeyPatch, env: str, ids: list[int]) -> None:
    """GPU-<uuid> entries (unique prefixes, as CUDA takes them) name NVML indices; an unknown or ambiguous one ends the list."""
    from dpo_tui.core.gpus import cuda_visible_ids

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    uuids = ["GPU-aa11", "GPU-ab22", "GPU-cc33", "GPU-dd44"]
    assert cuda_visible_ids(4, uuids) == ids
    assert cuda_visible_ids(4, [None] * 4) == list(range(min(4, len(env.split(",")))))  # no UUIDs known: positional


def test_an_eval_log_at_the_last_step_keeps_the_train_loss_in_the_listing(tmp_path: Path) -> None:
    """The Trainer logs an evaluation as a ``log`` of ``eval_`` values after the step's train log: the runs
    list must still show the train loss and margin, not blanks."""
    from dpo_tui.core import events as ev

    path = tmp_path / "events.jsonl"
    with ev.EventWriter(path) as writer:
        writer.emit("log", step=10, metrics={"loss": 0.42, "rewards/margins": 0.7})
        writer.emit("log", step=10, metrics={"eval_loss": 0.5, "eval_rewards/margins": 0.6, "epoch": 1.0})
    assert runs.last_log_metrics(path) == {"loss": 0.42, "rewards/margins": 0.7}


def test_compare_cli_lists_eval_rows_only_when_a_run_has_them(tmp_path: Path) -> None:
    from dpo_tui.core import events as ev
    from dpo_tui.core.config import build_config
    from tests.support.cli import run_cli_inprocess

    made = []
    for beta, with_eval in ((0.1, True), (0.5, False)):
        run = runs.create_run(tmp_path, build_config({"model": "sample", "dataset": "sample", "beta": beta}))
        with ev.EventWriter(run.events_path) as writer:
            writer.emit("log", step=5, metrics={"loss": 0.6, "rewards/margins": 0.2})
            if with_eval:
                writer.emit("eval", step=5, metrics={"eval_loss": 0.65, "eval_rewards/margins": 0.1})
        run.update_status(state="finished", step=5, max_steps=5)
        made.append(run.id)
    out = run_cli_inprocess("compare", *made, "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "eval_loss" in out.stdout and "0.65 / 0.65" in out.stdout, out.stdout
    assert "eval_rewards/accuracies" not in out.stdout  # no run logged it: no row of dashes


def test_chat_with_a_cancelled_run_does_not_say_wait(tmp_path: Path) -> None:
    """A queued run cancelled before it started has no adapter and never will: chat says so, and does not
    tell the operator to wait for a first checkpoint."""
    from dpo_tui.core.chat_client import run_adapter
    from dpo_tui.core.config import build_config
    from dpo_tui.core.errors import UserError

    run = runs.create_run(tmp_path, build_config({"model": "sample", "dataset": "sample"}))
    run.update_status(state="stopped", kind="cancelled")
    with pytest.raises(UserError) as info:
        run_adapter(run)
    assert "ended cancelled before its first checkpoint" in (info.value.hint or ""), info.value.hint
    assert "wait" not in (info.value.hint or "")
