"""Snapshots of the runs overview (a β ladder with a queued run, a failed run, an unreadable folder, a
selection) and of the compare screen (curves, final & best), at 100×30 and 80×24.

Deterministic like tests/ui/test_snapshots.py: fixed run folders and timestamps (tests/support/runs_fixture.py),
a frozen clock, a fixed host label and GPU inventory, no cursor blink. Update with
``pytest tests/ui/test_snapshots_runs.py --snapshot-update`` only after reading the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.compare import CompareScreen
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.runs_fixture import FAILED, LADDER, write_fixture_runs
from tests.support.snap import SIZES, header_ready, settle
from tests.support.uikit import make_services


async def on_runs(pilot) -> None:
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed and header_ready(app))


@pytest.mark.parametrize("size", SIZES)
def test_runs_overview(snap_compare, ui_root: Path, make_run, size) -> None:
    write_fixture_runs(make_run, ui_root)

    async def run_before(pilot) -> None:
        await on_runs(pilot)
        screen = pilot.app.screen
        table = screen.query_one("#runs-table")
        table.move_cursor(row=3, animate=False)  # the ladder's first run
        await pilot.press("g", "up", "up")  # select the ladder, then highlight its queued run
        await settle(pilot, lambda: screen.highlighted_id == LADDER[2])

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)


def compare_before(tab: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        await on_runs(pilot)
        app.push_screen(CompareScreen([LADDER[0], LADDER[1], FAILED]))
        await settle(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        if tab:
            await pilot.press(tab)
            await settle(pilot, lambda: True)

    return run_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tab", ["", "t"], ids=["curves", "metrics"])
def test_compare(snap_compare, ui_root: Path, make_run, size, tab: str) -> None:
    write_fixture_runs(make_run, ui_root)
    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=compare_before(tab))
