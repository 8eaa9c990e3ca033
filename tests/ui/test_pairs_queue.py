"""The A/B queue with Pilot: every key decides, undoes, skips or edits, and labels.jsonl says so right after it;
quitting and reopening continues at the same prompt with the same progress; an 80×24 snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.pairs_queue import PairsQueueScreen, progress_text
from tests.support.snap import settle
from tests.support.uikit import make_services, screen_text, until
from tests.unit.test_pairs_queue import write_candidates

ROWS = [
    ["Paris.", "The capital of France is Paris, a city on the Seine known for its museums, cafés and long history."],
    ["Water boils at 100 °C at sea level.", "Water boils at 100 degrees Celsius, although the exact point depends on pressure."],
    ["Eight.", "A spider has eight legs, which sets it apart from insects, which have six."],
    ["Blue light scatters most.", "The sky looks blue because air molecules scatter short blue wavelengths more than red ones."],
]


def labels(folder: Path) -> list[dict]:
    path = folder / "labels.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_candidates(tmp_path / "pairs" / "20251126-210000-tiny-chat", ROWS, prompt="Question {i}: answer it?")


async def open_queue(pilot, folder: Path) -> PairsQueueScreen:
    app = pilot.app
    app.push_screen(PairsQueueScreen(folder))
    await until(pilot, lambda: isinstance(app.screen, PairsQueueScreen))
    return app.screen


def test_progress_text() -> None:
    assert progress_text(34, 3, 54) == "37/54 · 3 skipped"
    assert progress_text(2, 0, 4) == "2/4"


async def test_keys_decide_skip_tie_undo_and_each_is_on_disk(ui_root: Path, folder: Path) -> None:
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_queue(pilot, folder)
        assert "Question 0" in screen_text(app) and "0/4" in screen_text(app)
        await pilot.press("a")
        assert [(x["index"], x["decision"], x["chosen"]) for x in labels(folder)] == [(0, "a", "c0")]
        assert screen.queue.current().index == 1
        await pilot.press("b")
        assert labels(folder)[-1] == {**labels(folder)[-1], "index": 1, "decision": "b", "chosen": "c1", "rejected": "c0"}
        await pilot.press("space")
        assert labels(folder)[-1]["decision"] == "skip"
        await pilot.pause()
        assert "3/4 · 1 skipped" in screen_text(app)
        await pilot.press("u")
        assert labels(folder)[-1]["decision"] == "undo" and screen.queue.current().index == 2
        await pilot.press("k")
        await pilot.press("t")
        assert [x["decision"] for x in labels(folder)] == ["a", "b", "skip", "undo", "skip", "tie"]
        await pilot.pause()
        assert screen.queue.current() is None and "Every prompt is handled" in screen_text(app)
        await pilot.press("a")  # nothing left to decide: the key says why instead of writing
        assert len(labels(folder)) == 6


async def test_edit_before_accepting(ui_root: Path, folder: Path) -> None:
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_queue(pilot, folder)
        await pilot.press("right", "e")
        editor = screen.query_one("#queue-editor")
        assert editor.display and editor.has_focus and editor.text == ROWS[0][1]
        await pilot.press("escape")  # cancel: nothing changes, nothing written
        assert not editor.display and screen.queue.edited() == {} and labels(folder) == []
        await pilot.press("e")
        editor.load_text("Paris is the capital of France.")
        await pilot.press("ctrl+s")
        assert not editor.display
        await pilot.pause()
        assert "edited" in screen_text(app) and "Paris is the capital of France." in screen_text(app)
        assert labels(folder) == []  # an edit is kept with the decision, not before
        await pilot.press("b")
        assert labels(folder)[-1]["edited"] == {"c1": "Paris is the capital of France."}


async def test_quit_and_reopen_continues_at_the_same_prompt(ui_root: Path, folder: Path) -> None:
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_queue(pilot, folder)
        await pilot.press("a", "space", "b", "u")
    again = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with again.run_test(size=(80, 24)) as pilot:
        screen = await open_queue(pilot, folder)
        assert screen.queue.current().index == 2 and screen.queue.progress() == (1, 1, 4)
        assert "2/4 · 1 skipped" in screen_text(again) and "Question 2" in screen_text(again)
        await pilot.press("u")  # the undo history survives the restart too
        assert screen.queue.current().index == 1
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(again.screen, PairsQueueScreen))


async def test_sides_stack_under_100_columns(ui_root: Path, folder: Path) -> None:
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_queue(pilot, folder)
        assert screen.query_one("#queue-sides").has_class("stacked")
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_queue(pilot, folder)
        assert not screen.query_one("#queue-sides").has_class("stacked")


def test_queue_snapshot(snap_compare, ui_root: Path, folder: Path) -> None:
    async def run_before(pilot) -> None:
        app = pilot.app
        app.push_screen(PairsQueueScreen(folder))
        await settle(pilot, lambda: isinstance(app.screen, PairsQueueScreen))
        await pilot.press("a", "space")
        await settle(pilot, lambda: app.screen.queue.current().index == 2)

    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
