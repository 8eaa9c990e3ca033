"""One real run from the console: model → dataset → experiment → launch on tiny-chat, then watch the
monitor until the run finishes. Uses the real trainer (a detached subprocess) on the bundled sample."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dpo_tui.core import paths
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.dataset import DatasetScreen
from dpo_tui.ui.screens.experiment import ExperimentScreen
from dpo_tui.ui.screens.models import ModelScreen
from dpo_tui.ui.screens.monitor import MonitorScreen
from dpo_tui.ui.services import Services
from tests.support.uikit import make_services, screen_text

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (paths.sample_model_dir() / "config.json").exists(), reason="sample_data/tiny-chat is not built"),
]


async def until(pilot, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{screen_text(pilot.app)}")
        await pilot.pause(0.1)


async def test_launch_and_watch_a_real_run(ui_root: Path) -> None:
    real = Services(runs_root=ui_root)
    services = make_services(ui_root, launcher=real.launcher, gpu_inventory=real.gpu_inventory, clock=time.time)
    app = DpoTuiApp(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.highlighted is not None, 20, "the model list")
        assert app.screen.highlighted.name.startswith("tiny-chat")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.report is not None, 60, "the lint report")
        assert app.screen.report.ok, app.screen.report.render()
        await pilot.press("ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen), 20, "the experiment screen")
        exp = app.screen
        # A short run: 6 steps, a checkpoint every 3.
        exp.apply_changes({"max_steps": 6, "save_fraction": 0.5, "name": "ui"})
        assert exp.config is not None, exp.problems
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.current_mode == "monitor" and isinstance(app.screen, MonitorScreen), 30, "the monitor")
        monitor = app.screen
        run_dir = ui_root / (monitor.run_id or "")
        assert (run_dir / "config.json").exists()
        await until(pilot, lambda: monitor.state in ("finished", "failed", "crashed", "stopped"), 600, "the run to end")
        await pilot.pause(1.2)
        text = screen_text(app)
        assert monitor.state == "finished", text + (run_dir / "trainer.log").read_text(errors="replace")[-3000:]
        assert monitor.history.step == 6
        assert len(monitor.history.series["loss"]) == 6
        assert "finished" in monitor.query_one("#monitor-title").plain
        assert monitor.query_one("#health").finding.code == "finished"
        assert (run_dir / "adapter").is_dir()
