"""Snapshots of every screen at 100×30 and 80×24 (pytest-textual-snapshot).

Deterministic by construction: a fake sample model and fixed pairs (``fake_sample``), fixture run
folders with fixed timestamps, a frozen clock, a fixed host label and GPU inventory, no cursor blink.
Update with ``pytest tests/ui/test_snapshots.py --snapshot-update`` only after reading the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.dataset import DatasetScreen
from dpo_tui.ui.screens.experiment import ExperimentScreen
from dpo_tui.ui.screens.models import ModelScreen
from dpo_tui.ui.screens.monitor import MonitorScreen
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.snap import SIZES, header_ready, settle
from tests.support.uikit import T0, learning_events, make_services

pytestmark = pytest.mark.usefixtures("fake_sample")


async def on_models(pilot) -> None:
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned and header_ready(app))


async def on_dataset(pilot, tab: str = "") -> None:
    app = pilot.app
    await on_models(pilot)
    await pilot.press("enter")
    await settle(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.tokens is not None)
    if tab:
        await pilot.press(tab)
        await settle(pilot, lambda: True)


async def on_experiment(pilot) -> None:
    app = pilot.app
    await on_dataset(pilot)
    await pilot.press("ctrl+n")
    await settle(pilot, lambda: isinstance(app.screen, ExperimentScreen) and app.screen.estimate is not None)


def fixture_runs(make_run) -> None:
    failed = [*learning_events(6), {"v": 1, "seq": 99, "t": T0 + 14, "type": "failed", "kind": "oom", "message": "CUDA out of memory", "hint": "halve the batch"}]
    make_run("20251126-210000-tiny-chat-b0.5-oom", failed, state="failed", kind="oom", message="CUDA out of memory", hint="halve the batch", config={"beta": 0.5})
    done = [*learning_events(30), {"v": 1, "seq": 99, "t": T0 + 61, "type": "finished", "step": 30}]
    make_run("20251126-211000-tiny-chat-b0.1", done, state="finished", config={"beta": 0.1})
    running = [
        *learning_events(18, max_steps=30),
        {"v": 1, "seq": 98, "t": T0 + 36.5, "type": "resource", "devices": [{"index": 0, "used": 31 * 1024**3, "total": 80 * 1024**3, "util": 97, "peak": 33 * 1024**3}], "rss": 3 * 1024**3},
        {"v": 1, "seq": 99, "t": T0 + 37, "type": "checkpoint", "step": 12, "path": "checkpoints/checkpoint-12"},
    ]
    make_run(
        "20251126-212000-tiny-chat-b0.3",
        running,
        state="running",
        config={"beta": 0.3},
        log="loading model\ntokenizing 423 pairs\n 40%|####      | 12/30 [00:24<00:36]\r 60%|######    | 18/30 [00:36<00:24]\n",
    )


async def on_runs(pilot) -> None:
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed and header_ready(app))


async def on_monitor(pilot, run_id: str) -> None:
    app = pilot.app
    await on_runs(pilot)
    app.open_monitor(run_id)
    await settle(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.loaded and app.screen.snapshot is not None)
    app.screen._redraw()
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES)
def test_models(snap_compare, ui_root: Path, size) -> None:
    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=on_models)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tab", ["", "p", "l"], ids=["report", "pairs", "lengths"])
def test_dataset(snap_compare, ui_root: Path, size, tab: str) -> None:
    async def run_before(pilot) -> None:
        await on_dataset(pilot, tab)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_experiment(snap_compare, ui_root: Path, size) -> None:
    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=on_experiment)


@pytest.mark.parametrize("size", SIZES)
def test_experiment_invalid(snap_compare, ui_root: Path, size) -> None:
    async def run_before(pilot) -> None:
        await on_experiment(pilot)
        beta = pilot.app.screen.query_one("#f-beta")
        beta.value = "-1"
        await settle(pilot, lambda: "beta" in pilot.app.screen.problems)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("confirm", [False, True], ids=["picker", "picked"])
def test_gpu_picker(snap_compare, ui_root: Path, size, confirm: bool) -> None:
    """Two GPUs, the second shared with another user. ``picker``: the dialog with GPU 1 picked;
    ``picked``: back on the experiment screen, the VRAM bar says who else is on that GPU."""
    from dpo_tui.ui.screens.gpu_picker import GpuPickerDialog
    from tests.support.uikit import fake_inventory

    async def run_before(pilot) -> None:
        app = pilot.app
        await on_experiment(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        await pilot.press("down", "space", *(["enter"] if confirm else []))
        if confirm:
            await settle(pilot, lambda: isinstance(app.screen, ExperimentScreen) and app.screen.config.gpus == [1])
        else:
            await settle(pilot, lambda: app.screen.picked == [1])

    services = make_services(ui_root, gpu_inventory=lambda: fake_inventory(2, {1: [("bob", 4242, 12.0)]}))
    assert snap_compare(DpoTuiApp(services), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_runs(snap_compare, ui_root: Path, make_run, size) -> None:
    fixture_runs(make_run)
    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=on_runs)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("run_id", ["20251126-212000-tiny-chat-b0.3", "20251126-210000-tiny-chat-b0.5-oom"], ids=["running", "failed"])
def test_monitor(snap_compare, ui_root: Path, make_run, size, run_id: str) -> None:
    fixture_runs(make_run)

    async def run_before(pilot) -> None:
        await on_monitor(pilot, run_id)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, ui_root: Path, make_run, size) -> None:
    fixture_runs(make_run)

    async def run_before(pilot) -> None:
        await on_runs(pilot)
        await pilot.press("question_mark")
        await settle(pilot, lambda: True)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_stop_confirmation(snap_compare, ui_root: Path, make_run, size) -> None:
    fixture_runs(make_run)

    async def run_before(pilot) -> None:
        await on_monitor(pilot, "20251126-212000-tiny-chat-b0.3")
        await pilot.press("s")
        await settle(pilot, lambda: True)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)
