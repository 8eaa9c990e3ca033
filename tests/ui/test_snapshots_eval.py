"""Snapshots of the Eval view (one run's evaluation) and the trade-off view (a β ladder's evaluations) at 80×24.

Deterministic: fixed reports (tests/support/eval_reports.py), fixed run folders, a frozen clock, and the
report's date shown in UTC. Update with ``pytest tests/ui/test_snapshots_eval.py --snapshot-update`` only
after reading the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.eval_tradeoff import TradeoffScreen
from dpo_tui.ui.screens.eval_view import EvalViewScreen
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.eval_reports import LADDER, write_ladder_reports
from tests.support.snap import header_ready, settle
from tests.support.uikit import make_services

SIZE = (80, 24)
RUNS = tuple(f"20251126-2120{i:02d}-tiny-chat-b{beta:g}" for i, (beta, *_rest) in enumerate(LADDER))


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The header shows the evaluation's local date and time: pin the zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def ladder(make_run, ui_root: Path) -> list[Path]:
    paths = [make_run(run_id, config={"beta": beta, "group": "ladder-eval"}) for run_id, (beta, *_rest) in zip(RUNS, LADDER, strict=True)]
    write_ladder_reports(paths)
    return paths


async def on_runs(pilot) -> None:
    app = pilot.app
    await settle(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed and header_ready(app))


def test_eval_view(snap_compare, ui_root: Path, ladder: list[Path]) -> None:
    async def run_before(pilot) -> None:
        app = pilot.app
        await on_runs(pilot)
        app.push_screen(EvalViewScreen(RUNS[1]))
        await settle(pilot, lambda: isinstance(app.screen, EvalViewScreen) and app.screen.loaded)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=SIZE, run_before=run_before)


def test_tradeoff_view(snap_compare, ui_root: Path, ladder: list[Path]) -> None:
    async def run_before(pilot) -> None:
        app = pilot.app
        await on_runs(pilot)
        app.push_screen(TradeoffScreen(list(RUNS)))
        await settle(pilot, lambda: isinstance(app.screen, TradeoffScreen) and app.screen.ladder is not None)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=SIZE, run_before=run_before)
