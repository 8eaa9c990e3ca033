"""The runs table at 80×24 with values that a narrow column used to cut into different-looking ones:
162/1000 steps ("162/100"), a loss of 1.3e-5 ("1.26e-"), β 0.1 ("0"), a long ladder group."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.runs import RunsScreen
from dpo_tui.ui.screens.runs_rows import COLUMNS, cell_width
from tests.support.uikit import T0, log_event, make_services, screen_text, until

RUN = "20261205-143012-tiny-chat-b0.1"
GROUP = "ladder-20261205-143012-long"


def hostile_events() -> list[dict]:
    return [
        {"v": 1, "seq": 1, "t": T0, "attempt": 1, "type": "started", "max_steps": 1000, "examples": 423},
        log_event(162, T0 + 10, 2, loss=1.3e-5, **{"rewards/margins": -12345.678, "rewards/accuracies": 1.0}),
    ]


async def test_hostile_values_stay_true_at_80x24(ui_root: Path, make_run) -> None:
    make_run(RUN, hostile_events(), state="running", config={"beta": 0.1, "group": GROUP, "lora_rank": 16}, step=162, max_steps=1000)
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed)
        screen = app.screen
        table = screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        cells = [str(c) for c in table.get_row_at(0)]
        by_key = {key: cells[i] for i, (key, _, _) in enumerate(COLUMNS)}
        # Every cell fits its column, so nothing is cut without a mark.
        for key, _, _ in COLUMNS:
            assert len(by_key[key]) <= cell_width(key), (key, by_key[key])
        assert by_key["progress"] == "162/1k"
        assert by_key["loss"] == "1.30e-5"[: cell_width("loss")] or by_key["loss"] == "1.3e-5"
        assert by_key["margin"] == "-1.2e4"
        assert by_key["beta"] == "0.1"
        assert by_key["group"].startswith("ladder-2") and "…" in by_key["group"] and by_key["group"].endswith("long")
        text = screen_text(app)
        assert "162/1k" in text and "1.3e-5" in text and "-1.2e4" in text
        assert "162/100 " not in text and "1.26e-" not in text
        # Scrolled right, β and the group read as they are (not "0", not a silent cut).
        columns = list(table.columns.values())
        beta_at = [key for key, _, _ in COLUMNS].index("beta")
        table.scroll_to(x=sum(c.get_render_width(table) for c in columns[:beta_at]), animate=False)
        await pilot.pause()
        text = screen_text(app)
        row = next(line for line in text.splitlines() if "sigmoid" in line and "r=" not in line)
        assert row.split()[:3] == ["0.1", "sigmoid", "16"], row
        assert by_key["group"] in row, row


@pytest.mark.parametrize("room", [60, 78, 98, 118, 158, 238])
@pytest.mark.parametrize("longest", [20, 30, 34, 48, 80])
def test_no_column_is_cut_at_the_right_edge(room: int, longest: int) -> None:
    """Every column either fits whole or starts at or past the edge; at 78 cells (80 columns less the
    scrollbar) the accuracy column is always whole."""
    from dpo_tui.ui.screens.runs_rows import COLUMNS, RUN_ID_MAX, WIDTHS, run_id_width

    width = run_id_width(longest, room)
    assert width >= min(longest, 24)
    edge = WIDTHS["sel"] + 2 + width + 2
    keys = [key for key, _, _ in COLUMNS[2:]]
    whole = []
    for key in keys:
        end = edge + WIDTHS[key] + 2
        assert end <= room or edge >= room, f"{key} is cut at the edge: it spans {edge}..{end} of {room}"
        if end <= room:
            whole.append(key)
        edge = end
    if room >= 78:
        assert "acc" in whole, (width, whole)
    if longest <= RUN_ID_MAX and room >= 118:
        assert width >= longest  # wide screens show the whole id
