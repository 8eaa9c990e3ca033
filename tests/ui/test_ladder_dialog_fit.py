"""The β ladder dialog at 80×24: its explanation wraps inside the box instead of being cut, and an error
shows below the field without pushing anything out."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.ladder_dialog import LadderDialog
from tests.support.snap import settle
from tests.support.uikit import make_services
from tests.ui.test_snapshots import on_experiment

pytestmark = pytest.mark.usefixtures("fake_sample")


async def open_ladder(pilot) -> LadderDialog:
    await on_experiment(pilot)
    await pilot.press("ctrl+g")
    await settle(pilot, lambda: isinstance(pilot.app.screen, LadderDialog))
    return pilot.app.screen


async def test_ladder_dialog_text_fits_80_columns(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_ladder(pilot)
        box = dialog.query_one("#ladder-box").content_region
        for selector in ("#ladder-detail", "#ladder-hint"):
            part = dialog.query_one(selector, Static)
            assert part.region.right <= box.right and part.region.width <= box.width
            # Every word of the text is on screen: wrapped lines hold it all.
            lines = [strip.text.rstrip() for strip in part.render_lines(part.region.reset_offset)]
            assert " ".join(" ".join(lines).split()) == " ".join(str(part.render()).split())
        assert "one after another on the same device." in " ".join(
            s.text for s in dialog.query_one("#ladder-detail", Static).render_lines(dialog.query_one("#ladder-detail").region.reset_offset))


def test_ladder_dialog_snapshot(snap_compare, ui_root: Path) -> None:
    async def run_before(pilot) -> None:
        dialog = await open_ladder(pilot)
        dialog.query_one("#ladder-betas").value = "0.1"  # the error line shows too
        await settle(pilot, lambda: dialog.query_one("#ladder-error").display)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=(80, 24), run_before=run_before)
