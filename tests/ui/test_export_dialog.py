"""Export from the console at 80×24: `e` on the runs screen, the plan's preflight, a real detached export.

Uses the session's trained sample run (``trained_run``), copied into this test's runs root so the
export job folder never touches the shared run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from dpo_tui.core import paths
from dpo_tui.core.safetensors_header import read_header
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.export_watch import ExportPanel
from dpo_tui.ui.screens.export_dialog import ExportDialog
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.mounts import tmpfs
from tests.support.reliability import record_outcome
from tests.support.uikit import make_services, screen_text

pytestmark = pytest.mark.slow


async def until(pilot, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def copy_run(trained_run, ui_root: Path) -> Path:
    ui_root.mkdir(parents=True, exist_ok=True)
    dest = ui_root / trained_run.id
    shutil.copytree(trained_run.path, dest, ignore=shutil.ignore_patterns("exports"))
    return dest


async def open_dialog(pilot, app: DpoTuiApp) -> ExportDialog:
    runs = app.screen
    assert isinstance(runs, RunsScreen)
    await until(pilot, lambda: runs.listed and runs.highlighted is not None, 30, "the runs list")
    await pilot.press("e")
    await until(pilot, lambda: isinstance(app.screen, ExportDialog), 10, "the export dialog")
    dialog = app.screen
    assert isinstance(dialog, ExportDialog)
    return dialog


async def set_folder(pilot, dialog: ExportDialog, folder: Path) -> None:
    dialog.query_one("#export-folder").value = str(folder)
    await pilot.pause()  # the Input.Changed that starts the new check
    await until(pilot, lambda: dialog.checked, 30, "the preflight")


async def test_export_merged_from_the_runs_screen(trained_run, ui_root: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run, ui_root)
    out = tmp_path / "out"
    app = DpoTuiApp(make_services(ui_root, clock=time.time), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_dialog(pilot, app)
        await set_folder(pilot, dialog, out)
        assert dialog.error is None, dialog.error
        text = screen_text(app)
        assert "Export " in text and "merged weights →" in text and "disk: writes about" in text, text
        # Ticked and unticked read differently without colour (merged is on, the others off).
        assert "▐✓▌ merged" in text and "▐ ▌ GGUF" in text, text
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 30, "the dialog to close")
        panel = app.screen.query_one(ExportPanel)
        await until(pilot, lambda: panel.jobs and not any(j.active for j in panel.jobs.values()), 300, "the export to end")
        job = next(iter(panel.jobs.values()))
        assert job.state == "done", (job, (job.path / "worker.log").read_text())
        assert "export" in screen_text(app) and "done: merged:" in screen_text(app)
    # The job folder follows the contract, and the worker ran detached (its own session).
    jobs = list((run_dir / "exports").iterdir())
    assert len(jobs) == 1
    status = json.loads((jobs[0] / "status.json").read_text())
    assert status["state"] == "done" and status["exit_code"] == 0 and status["outputs"]["merged"] == str(out / "merged")
    events = [json.loads(line) for line in (jobs[0] / "progress.jsonl").read_text().splitlines()]
    assert events[-1]["type"] == "done" and any(e["type"] == "stage" for e in events)
    # The merged folder holds the base's tensors with the base's shapes (the LoRA merged in, not added).
    merged = read_header(out / "merged" / "model.safetensors")
    assert trained_run.config().model == "sample"
    base = read_header(paths.sample_model_dir() / "model.safetensors")
    assert {t.name: t.shape for t in merged.tensors} == {t.name: t.shape for t in base.tensors}
    assert (out / "merged" / "tokenizer_config.json").exists() and (out / "merged" / "README.md").exists()


async def test_export_is_refused_before_work(trained_run, ui_root: Path, tmp_path: Path) -> None:
    """An existing destination and a disk too small are refused in the dialog; nothing starts."""
    run_dir = copy_run(trained_run, ui_root)
    app = DpoTuiApp(make_services(ui_root, clock=time.time), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_dialog(pilot, app)
        taken = tmp_path / "taken"
        (taken / "merged").mkdir(parents=True)
        await set_folder(pilot, dialog, taken)
        assert dialog.error is not None and "already exists" in dialog.error, dialog.error
        assert "✗" in screen_text(app)
        with tmpfs(tmp_path / "small", "256k") as small:
            started = time.perf_counter()
            await set_folder(pilot, dialog, small / "out")
            seconds = time.perf_counter() - started
            assert dialog.error is not None and "Not enough disk space" in dialog.error, dialog.error
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert isinstance(app.screen, ExportDialog)  # refused: still asking
            assert not (run_dir / "exports").exists() and list(small.iterdir()) == []
        record_outcome("bad-input", "console-export-full-disk", "rejected", category="export", seconds=round(seconds, 3))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 10, "the runs screen")
