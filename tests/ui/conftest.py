"""Fixtures for the console tests (helpers live in uikit.py so test modules can import them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.ui.services import Services
from tests.support.uikit import T0, learning_events, make_services


@pytest.fixture(autouse=True)
def _every_gpu_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake inventories stand for the whole machine: a CUDA_VISIBLE_DEVICES in the environment
    running the tests must not hide their GPUs (tests that need it set it themselves)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def ui_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    return root


@pytest.fixture
def services(ui_root: Path) -> Services:
    return make_services(ui_root)


@pytest.fixture
def make_run(ui_root: Path) -> Callable[..., Path]:
    """Write a run folder with a config, a status and a fixed event log; returns its path."""
    from dpo_tui.core.config import SAMPLE_PRESET, build_config
    from dpo_tui.core.runs import RunStatus, create_run

    def factory(
        run_id: str = "20251126-212000-tiny-chat-b0.1",
        events: Iterable[dict[str, Any]] | None = None,
        state: str = "finished",
        log: str = "loading model\ntokenizing 423 pairs\n",
        config: dict[str, Any] | None = None,
        **status: Any,
    ) -> Path:
        cfg = dict(SAMPLE_PRESET)
        cfg.update(config or {})
        run = create_run(ui_root, build_config(cfg), run_id=run_id)
        evs = list(events if events is not None else learning_events(30))
        run.events_path.write_text("".join(json.dumps(e) + "\n" for e in evs))
        run.log_path.write_text(log)
        steps = [e["step"] for e in evs if e.get("type") == "log"]
        started = next((e for e in evs if e.get("type") == "started"), None)
        fields: dict[str, Any] = {
            "state": state,
            "attempt": 1,
            "host": "gpu-box",
            "step": steps[-1] if steps else 0,
            "max_steps": started.get("max_steps") if started else None,
            "created_at": T0,
            "started_at": T0 if started else None,
            "ended_at": evs[-1]["t"] if state in ("finished", "stopped", "failed") and evs else None,
        }
        fields.update(status)
        run.write_status(RunStatus(**fields))
        return run.path

    return factory


@pytest.fixture
def fake_sample(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the bundled sample data at a fixed fake (model + pairs), so screens are deterministic."""
    from tests.support.uikit import build_fake_sample_data

    root = build_fake_sample_data(tmp_path_factory.mktemp("sample_data"))
    monkeypatch.setenv("DPO_TUI_SAMPLE_DATA", str(root))
    return root
