"""What keeps keys fast (docs/design/latency.md): the footer rebuilds only on a change, charts smooth
incrementally with the same result, a chart with unchanged data does not repaint."""

from __future__ import annotations

import math
import random
from pathlib import Path
from unittest.mock import patch

from textual.widgets._footer import FooterKey

from dpo_tui.core.run_states import ACTIVE_STATES
from dpo_tui.ui import chart
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.runs import RunsScreen
from dpo_tui.ui.widgets.footer import ConsoleFooter
from dpo_tui.ui.widgets.metric_chart import MetricChart, Series, _Smoothed
from tests.support.uikit import learning_events, make_services


def test_incremental_smoothing_equals_a_full_pass() -> None:
    rng = random.Random(7)
    points: list[chart.Point] = []
    smoothed = _Smoothed()
    for chunk in range(20):
        for _ in range(rng.randint(0, 30)):
            y = rng.choice([None, math.nan, rng.uniform(-2, 2), rng.uniform(-2, 2)])
            points.append((len(points) + 1, y))
        smoothed.sync(points)
        assert smoothed.points == chart.ema(points), chunk
    del points[len(points) // 2 :]  # a resumed run drops the steps after its checkpoint
    smoothed.sync(points)
    assert smoothed.points == chart.ema(points)
    points[-1] = (points[-1][0], 5.0)  # rewritten
    smoothed.sync(points)
    assert smoothed.points == chart.ema(points)


def test_chart_repaints_only_when_its_data_changes() -> None:
    widget = MetricChart("loss")
    points: list[chart.Point] = [(1, 0.7), (2, 0.6)]
    with patch.object(MetricChart, "refresh") as refresh:
        widget.set_series([Series("loss", points)])
        assert refresh.call_count == 1
        widget.set_series([Series("loss", list(points))])  # a rebuilt list with the same points
        assert refresh.call_count == 1
        points.append((3, 0.5))
        widget.set_series([Series("loss", points)])
        assert refresh.call_count == 2
        widget.set_series([Series("loss", points)], smooth=True)
        assert refresh.call_count == 3


async def test_footer_follows_the_highlighted_run_without_rebuilding_on_every_move(ui_root: Path, make_run) -> None:
    make_run("20251126-210000-tiny-chat-b0.1", state="finished")
    make_run("20251126-211000-tiny-chat-b0.2", state="finished")
    make_run("20251126-212000-tiny-chat-b0.3", learning_events(12), state="running")
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    rebuilds = 0
    original = ConsoleFooter.recompose

    async def counting(self: ConsoleFooter) -> None:
        nonlocal rebuilds
        rebuilds += 1
        await original(self)

    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        for _ in range(100):
            if screen.listed:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        with patch.object(ConsoleFooter, "recompose", counting):
            moves = ["down", "down", "up", "up", "down", "down"]
            for key in moves:
                await pilot.press(key)
                await pilot.pause(0.1)
                summary = screen.highlighted
                assert summary is not None
                stop = next(k for k in screen.query(FooterKey) if k.action == "stop_run")
                assert stop.has_class("-disabled") == (summary.state not in ACTIVE_STATES), (key, summary.id)
            # Only a move between a running and a finished run changes the keys.
            assert 0 < rebuilds < len(moves)
            rebuilds = 0
            for key in ["3", "2", "3", "2"]:
                await pilot.press(key)
                await pilot.pause(0.1)
            assert rebuilds <= 2  # each footer once, when its screen is first shown; never when hidden
