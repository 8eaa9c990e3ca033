"""The compare screen at 80×24: the eval split's final/best values as their own rows, and run ids cut to
what tells them apart (never to a prefix that reads as another id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.compare import CompareScreen, short_ids
from tests.support.runs_fixture import beta_events
from tests.support.snap import settle
from tests.support.uikit import T0, make_services

IDS = ("20251126-212000-tiny-chat-b0.05", "20251126-212001-tiny-chat-b0.1", "20251126-210000-tiny-chat-b0.5-oom")


def test_short_ids_keep_what_differs_and_mark_every_cut() -> None:
    assert short_ids(list(IDS), 40) == list(IDS)  # they fit: untouched
    assert short_ids(list(IDS), 20) == ["…-212000-…-b0.05", "…-212001-…-b0.1", "…-210000-…-b0.5-oom"]
    cut = short_ids(list(IDS), 12)
    assert all(len(i) <= 12 and "…" in i for i in cut) and len(set(cut)) == 3
    # Ids that only differ inside the part a cut would drop stay whole rather than alike.
    same_ends = ["a-" + "x" * 10 + "1" + "x" * 10 + "-z", "a-" + "x" * 10 + "2" + "x" * 10 + "-z"]
    assert short_ids(same_ends, 10) == same_ends


def with_eval(beta: float, steps: int = 30) -> list[dict[str, Any]]:
    events = beta_events(steps, beta)
    t = T0 + 200
    for step in (10, 20, 30):
        metrics = {"eval_loss": 0.7 - 0.01 * step * beta, "eval_rewards/margins": 0.02 * step, "eval_rewards/accuracies": 0.6}
        # What the Trainer writes: an ordinary log at the step, then the eval event.
        events.append({"v": 1, "seq": 1000 + step, "t": t + step, "type": "log", "step": step, "metrics": {**metrics, "epoch": 1.0}})
        events.append({"v": 1, "seq": 1001 + step, "t": t + step, "type": "eval", "step": step, "metrics": metrics})
    return sorted(events, key=lambda e: (e.get("step", -1) if e["type"] in ("log", "eval") else -1, e["type"] == "eval"))


def cells(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(n)] for n in range(table.row_count)]


async def test_compare_at_80x24_shows_eval_rows_and_fitting_ids(ui_root: Path, make_run) -> None:
    for run_id, beta in zip(IDS, (0.05, 0.1, 0.5), strict=True):
        make_run(run_id, with_eval(beta), config={"beta": beta})
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CompareScreen(list(IDS)))
        await settle(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        screen = app.screen
        metrics = {row[0]: row[1:] for row in cells(screen.query_one("#compare-metrics", DataTable))}
        assert {"eval_loss", "eval_rewards/margins", "eval_rewards/accuracies"} <= metrics.keys()
        # Train points at the eval steps survive the eval log: 30 steps, the last train loss shown.
        assert metrics["steps"] == ["30", "30", "30"] and "–" not in metrics["loss"]
        assert metrics["eval_loss"][0].startswith("0.685")
        await pilot.press("d")
        await settle(pilot, lambda: True)
        diff = screen.query_one("#compare-diff", DataTable)
        run_row = cells(diff)[0]
        assert run_row[1:] == ["…-212000-…-b0.05", "…-212001-…-b0.1", "…-210000-…-b0.5-oom"]
        widths = [column.get_render_width(diff) for column in diff.ordered_columns]
        assert sum(widths) <= 80 - 2


@pytest.mark.parametrize("size", [pytest.param((80, 24), id="80x24")])
def test_compare_diff_snapshot(snap_compare, ui_root: Path, make_run, size) -> None:
    for run_id, beta in zip(IDS, (0.05, 0.1, 0.5), strict=True):
        make_run(run_id, with_eval(beta), config={"beta": beta})

    async def run_before(pilot) -> None:
        app = pilot.app
        app.push_screen(CompareScreen(list(IDS)))
        await settle(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        await pilot.press("d")
        await settle(pilot, lambda: True)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=size, run_before=run_before)
