"""The chat side a run opens with is its best saved weights (``run_adapter(run, "best")``), and the chat
screen says which and why; with no eval split the final adapter stays when it is best by train loss."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from dpo_tui.core.chat_client import run_adapter
from dpo_tui.core.config import build_config
from dpo_tui.core.runs import Run, RunStatus, create_run
from tests.support.fake_chat_worker import write_fake_assets
from tests.ui.test_chat_screen import chat_app, ready

RUN_ID = "20251126-212000-tiny-chat-b0.1"


def weights(folder: Path, adapter: Path) -> None:
    folder.mkdir(parents=True)
    for f in adapter.iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)


def run_with(root: Path, assets: dict[str, Path], losses: dict[int, float], evals: dict[int, float]) -> Run:
    """A finished run with checkpoints at 10 and 20, its final adapter at 30, and the given logged losses."""
    run = create_run(root, build_config({"model": str(assets["base"]), "beta": 0.1}), run_id=RUN_ID)
    for step in (10, 20):
        folder = run.checkpoints_dir / f"checkpoint-{step}"
        weights(folder, assets["adapter-a"])
        (folder / "optimizer.pt").write_bytes(b"x")
        (folder / "scheduler.pt").write_bytes(b"x")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    weights(run.adapter_dir, assets["adapter-a"])
    (run.adapter_dir / "COMPLETE").write_text("")
    events: list[dict[str, Any]] = [{"type": "started", "max_steps": 30, "attempt": 1}]
    for step in sorted(losses):
        events.append({"type": "log", "step": step, "metrics": {"loss": losses[step]}})
        if step in evals:  # what the Trainer writes at an eval step: a log of the eval values, then the eval
            events.append({"type": "log", "step": step, "metrics": {"eval_loss": evals[step], "epoch": 1.0}})
            events.append({"type": "eval", "step": step, "metrics": {"eval_loss": evals[step]}})
    run.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    run.write_status(RunStatus(state="finished", created_at=0.0, step=30, max_steps=30, exit_code=0))
    return run


def test_best_by_eval_loss_is_a_checkpoint(tmp_path: Path) -> None:
    assets = write_fake_assets(tmp_path / "assets")
    run = run_with(tmp_path / "runs", assets, {10: 0.6, 20: 0.4, 30: 0.2}, {10: 0.55, 20: 0.5, 30: 0.7})
    choice = run_adapter(run, "best")
    assert choice.label == f"{RUN_ID}@checkpoint-20" and choice.path == run.checkpoints_dir / "checkpoint-20"
    assert choice.why == "checkpoint-20: best by eval loss, 0.5 at step 20"
    assert run_adapter(run).path == run.adapter_dir  # asked for nothing: the final adapter, as before


def test_without_an_eval_split_the_final_adapter_stays_when_best_by_train_loss(tmp_path: Path) -> None:
    assets = write_fake_assets(tmp_path / "assets")
    run = run_with(tmp_path / "runs", assets, {10: 0.6, 20: 0.4, 30: 0.2}, {})
    choice = run_adapter(run, "best")
    assert choice.label == RUN_ID and choice.path == run.adapter_dir
    assert choice.why == "final adapter: best by train loss (no eval split), 0.2 at step 30"


def test_nothing_logged_keeps_the_plain_default(tmp_path: Path) -> None:
    assets = write_fake_assets(tmp_path / "assets")
    run = run_with(tmp_path / "runs", assets, {}, {})
    choice = run_adapter(run, "best")
    assert choice.path == run.adapter_dir and choice.why == ""


async def test_chat_opens_on_the_best_checkpoint_and_says_why(ui_root: Path, tmp_path: Path) -> None:
    assets = write_fake_assets(tmp_path / "assets")
    run_with(ui_root, assets, {10: 0.6, 20: 0.4, 30: 0.2}, {10: 0.55, 20: 0.5, 30: 0.7})
    app = chat_app(ui_root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert [a.label for a in screen.tuned] == [f"{RUN_ID}@checkpoint-20"]
        assert "checkpoint-20: best by eval loss, 0.5 at step 20" in [n.message for n in app._notifications]
