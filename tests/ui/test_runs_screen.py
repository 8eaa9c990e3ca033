"""The runs overview and the app shell, driven by keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.confirm import ConfirmDialog
from dpo_tui.ui.screens.monitor import MonitorScreen
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.uikit import T0, learning_events, make_services, screen_text


async def wait_listed(pilot, screen: RunsScreen) -> None:
    for _ in range(100):
        if screen.listed:
            break
        await pilot.pause(0.05)
    await pilot.pause()


async def test_empty_root_opens_setup_and_creates_nothing(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.current_mode == "setup"
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_listed(pilot, screen)
        assert "No runs yet" in screen_text(app)
    assert not ui_root.exists(), "opening the console must not create the runs root"


async def test_runs_listed_newest_first_and_enter_opens_monitor(ui_root: Path, make_run) -> None:
    old = make_run("20251126-212000-tiny-chat-b0.1", state="finished")
    make_run("20251126-213000-tiny-chat-b0.3", learning_events(12), state="running", config={"beta": 0.3})
    before = {p: p.stat().st_mtime_ns for p in old.iterdir()}
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.current_mode == "runs"
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await wait_listed(pilot, screen)
        table = screen.query_one("#runs-table")
        assert [str(k.value) for k in table.rows] == ["20251126-213000-tiny-chat-b0.3", "20251126-212000-tiny-chat-b0.1"]
        text = screen_text(app)
        assert "running" in text and "12/30" in text and "2 runs, 1 active" in text
        await pilot.press("down")
        assert screen.highlighted_id == "20251126-212000-tiny-chat-b0.1"
        assert screen.check_action("stop_run", ()) is None  # finished: nothing to stop
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.current_mode == "monitor"
        assert isinstance(app.screen, MonitorScreen)
        assert app.screen.run_id == "20251126-212000-tiny-chat-b0.1"
    assert {p: p.stat().st_mtime_ns for p in old.iterdir()} == before, "browsing must not change a run folder"


async def test_stop_asks_first_and_no_cancels(ui_root: Path, make_run) -> None:
    path = make_run("20251126-213000-tiny-chat-b0.3", learning_events(5), state="running")
    status_before = (path / "status.json").read_text()
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await wait_listed(pilot, app.screen)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert "Stop 20251126-213000-tiny-chat-b0.3?" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
    assert (path / "status.json").read_text() == status_before


async def test_resume_without_checkpoint_explains_instead_of_crashing(ui_root: Path, make_run, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = [*learning_events(3), {"v": 1, "seq": 9, "t": T0 + 9, "type": "failed", "kind": "oom", "message": "CUDA out of memory", "hint": "halve the batch"}]
    make_run("20251126-213000-tiny-chat-b0.1", failed, state="failed", kind="oom", message="CUDA out of memory", hint="halve the batch")
    notices: list[str] = []
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        monkeypatch.setattr(app, "notify", lambda message, **kw: notices.append(message))
        await pilot.pause()
        await wait_listed(pilot, app.screen)
        assert "failed (oom)" in screen_text(app) and "halve the batch" in screen_text(app)
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
    assert any("no complete checkpoint" in n for n in notices), notices
    assert not any("Traceback" in n for n in notices)


async def test_mode_keys_and_help(ui_root: Path, make_run) -> None:
    make_run()
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.current_mode == "runs"
        await pilot.press("3")
        await pilot.pause()
        assert app.current_mode == "monitor"
        assert "No run open" in screen_text(app)
        await pilot.press("4")
        await pilot.pause()
        assert app.current_mode == "chat"
        await pilot.press("f3")
        await pilot.pause()
        assert app.current_mode == "runs"
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Keys: runs screen" in screen_text(app)
        # At 80×24 the list scrolls (the runs screen has many keys): check the rows, not the visible part.
        help_table = app.screen.query_one("#help-table")
        actions = [str(help_table.get_row_at(i)[1]) for i in range(help_table.row_count)]
        assert "Quit the console (runs keep going)" in actions and "Reverse the sort order" in actions
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_every_footer_action_is_in_the_palette(ui_root: Path, make_run) -> None:
    from dpo_tui.ui.commands import BindingsProvider

    make_run()
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await wait_listed(pilot, app.screen)
        provider = BindingsProvider(app.screen)
        titles = {title for title, _, _ in provider._commands()}
        for active in app.screen.active_bindings.values():
            b = active.binding
            if b.show and b.description and active.enabled:
                assert any(t.endswith(b.description) for t in titles), b.description
                assert b.id, f"binding {b.key} has no id"


async def test_open_chat_preselects_run(ui_root: Path, make_run) -> None:
    make_run()
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await wait_listed(pilot, app.screen)
        await pilot.press("c")
        await pilot.pause()
        assert app.current_mode == "chat"
        assert app.chat_run_id == "20251126-212000-tiny-chat-b0.1"
        assert getattr(app.screen_stack[0], "run_id", None) == "20251126-212000-tiny-chat-b0.1"


async def test_home_end_move_the_row_cursor_and_c_chats_with_that_run(ui_root: Path, make_run) -> None:
    ids = [f"20251126-21{m:02d}00-tiny-chat-b0.1" for m in range(30)]
    for run_id in ids:
        make_run(run_id)
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        await wait_listed(pilot, screen)
        newest, oldest = ids[-1], ids[0]
        assert screen.highlighted_id == newest
        await pilot.press("end")
        await pilot.pause()
        assert screen.highlighted_id == oldest and oldest in screen_text(app)
        await pilot.press("home")
        await pilot.pause()
        assert screen.highlighted_id == newest
        await pilot.press("pagedown")
        await pilot.pause()
        paged = screen.highlighted_id
        assert paged not in (None, newest) and paged in screen_text(app)
        await pilot.press("end", "c")
        await pilot.pause()
        assert app.current_mode == "chat" and app.chat_run_id == oldest


async def test_compare_with_fewer_than_two_selected_says_how(ui_root: Path, make_run) -> None:
    make_run()
    make_run("20251126-213000-tiny-chat-b0.3", config={"beta": 0.3})
    notes: list[str] = []
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        await wait_listed(pilot, screen)
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert notes and "none selected" in notes[-1] and "space" in notes[-1]
        await pilot.press("space", "v")
        await pilot.pause()
        assert "1 selected" in notes[-1]


async def test_monitor_without_a_run_shows_how_to_open_one(ui_root: Path, make_run) -> None:
    make_run()
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("3")
        await pilot.pause()
        assert isinstance(app.screen, MonitorScreen)
        text = screen_text(app)
        assert "No run open. Press 2 for the runs overview" in text
        assert "reading the event log" not in text
        footer = text.splitlines()[-1]
        assert "s Stop" not in footer and "c Chat" not in footer
        assert not {"s", "c"} & set(app.screen.active_bindings)
