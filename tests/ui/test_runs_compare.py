"""Runs overview (filter, sort, select, delete, copy, queued and unreadable rows, cancel a ladder), the
compare screen, the β ladder dialog and run-outcome notifications, driven by keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.runs import Run
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.compare import CompareScreen, diff_rows, metric_rows
from dpo_tui.ui.screens.confirm import ConfirmDialog
from dpo_tui.ui.screens.runs import RunsScreen, exit_text, matches, queue_position
from tests.support.runs_fixture import BROKEN, FAILED, FINISHED, GROUP, LADDER, write_fixture_runs
from tests.support.uikit import T0, make_services, screen_text, until

ALL = [BROKEN, LADDER[2], LADDER[1], LADDER[0], FINISHED, FAILED]



async def open_runs(pilot) -> RunsScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed)
    return app.screen


def rows(screen: RunsScreen) -> list[str]:
    return [str(k.value) for k in screen.query_one("#runs-table").rows]


async def highlight(pilot, screen: RunsScreen, run_id: str) -> None:
    table = screen.query_one("#runs-table")
    table.move_cursor(row=rows(screen).index(run_id), animate=False)
    await pilot.pause()
    assert screen.highlighted_id == run_id


@pytest.fixture
def runs(make_run, ui_root: Path) -> Path:
    write_fixture_runs(make_run, ui_root)
    return ui_root


def capture_notices(app: DpoTuiApp, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    notes: list[tuple[str, str]] = []
    monkeypatch.setattr(app, "notify", lambda message, **kw: notes.append((message, kw.get("severity", "information"))))
    return notes


# --- pure helpers ------------------------------------------------------------------------------------
def test_queue_position_sort_and_labels() -> None:
    from dpo_tui.core.runs import RunSummary
    from dpo_tui.ui.screens.compare import unique_labels
    from dpo_tui.ui.screens.runs import SORT_KEYS, sort_summaries

    assert queue_position("queued: position 3, gpu0 busy with x") == 3
    assert queue_position("starting") is None and queue_position(None) is None
    runs = [RunSummary(id=f"r{i}", path=Path(f"r{i}"), state="finished", loss=loss) for i, loss in enumerate([0.3, None, 0.1, 0.3])]
    by_loss = next(k for k in SORT_KEYS if k.name == "loss")
    assert [s.id for s in sort_summaries(runs, by_loss, False, 0.0)] == ["r2", "r3", "r0", "r1"]  # ties newest first, None last
    assert [s.id for s in sort_summaries(runs, by_loss, True, 0.0)] == ["r3", "r0", "r2", "r1"]
    assert unique_labels(["β=0.1", "β=0.5", "β=0.1"]) == ["β=0.1 #1", "β=0.5", "β=0.1 #2"]


def test_monitor_title_shows_the_queue_position() -> None:
    from types import SimpleNamespace

    from dpo_tui.core.events import RunHistory
    from dpo_tui.ui.widgets.run_panels import outcome_text

    status = SimpleNamespace(phase="queued: position 2, gpu0 busy with r1")
    assert outcome_text("queued", status, RunHistory()) == "queued, position 2, gpu0 busy with r1"
    assert outcome_text("queued", SimpleNamespace(phase=""), RunHistory()) == "queued"


async def test_rows_show_group_queue_position_exit_reason_and_unreadable(runs: Path) -> None:
    app = DpoTuiApp(make_services(runs))
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await open_runs(pilot)
        assert rows(screen) == ALL
        s = screen.summaries
        assert exit_text(s[FAILED]) == "oom: CUDA out of memory"
        assert exit_text(s[BROKEN]) == "unreadable: has no config.json"
        assert s[LADDER[0]].group == GROUP and matches(s[LADDER[0]], "LADDER b0.05") and not matches(s[FINISHED], "ladder")
        text = screen_text(app)
        assert "queued #1" in text and "unreadable" in text and GROUP in text
        await highlight(pilot, screen, LADDER[2])
        assert f"queued, position 1, gpu0 busy with {LADDER[1]}" in screen_text(app)
        await highlight(pilot, screen, BROKEN)
        assert screen.check_action("open_monitor", ()) is None  # nothing to monitor in a broken folder
        assert "d deletes the folder" in screen_text(app)
        # Running runs update in place: only the changed cells are rewritten.
        run = Run(runs / LADDER[1])
        status = run.raw_status()
        status.step = 19
        run.write_status(status)
        screen.refresh_runs()
        await until(pilot, lambda: screen._cells[LADDER[1]][3] == "19/30")
        assert rows(screen) == ALL


async def test_filter_and_sort(runs: Path) -> None:
    app = DpoTuiApp(make_services(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_runs(pilot)
        await pilot.press("slash")
        assert screen.focused.id == "runs-filter"
        await pilot.press(*"ladder")
        await pilot.pause()
        assert rows(screen) == list(LADDER[::-1])
        assert "3 match" in screen_text(app)
        await pilot.press("space")  # typed into the filter, not a selection
        await pilot.press(*"queued")
        await pilot.pause()
        assert rows(screen) == [LADDER[2]]
        await pilot.press("enter")  # back to the table; the monitor does not open
        await pilot.pause()
        assert screen.focused.id == "runs-table" and app.current_mode == "runs"
        await pilot.press("escape")  # clears the filter
        await pilot.pause()
        assert rows(screen) == ALL
        await pilot.press("o")  # by state: running, …, queued, failed, finished, unreadable
        await pilot.pause()
        assert rows(screen) == [LADDER[1], LADDER[2], FAILED, LADDER[0], FINISHED, BROKEN]
        assert "sorted by state" in screen_text(app)
        await pilot.press("o")  # by β, ascending; ties newest first; no β last
        await pilot.pause()
        assert rows(screen) == [LADDER[0], LADDER[1], FINISHED, LADDER[2], FAILED, BROKEN]
        await pilot.press("O")
        await pilot.pause()
        assert rows(screen) == [LADDER[2], FAILED, LADDER[1], FINISHED, LADDER[0], BROKEN]
        assert "sorted by β ↓" in screen_text(app)


async def test_select_group_and_compare(runs: Path) -> None:
    app = DpoTuiApp(make_services(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_runs(pilot)
        assert screen.check_action("compare", ()) is None
        await highlight(pilot, screen, LADDER[0])
        await pilot.press("g")
        await pilot.pause()
        assert screen.selected == set(LADDER)
        assert "3 selected" in screen_text(app) and "●" in screen_text(app)
        await highlight(pilot, screen, FINISHED)
        await pilot.press("space")
        await pilot.pause()
        assert screen.selected == {*LADDER, FINISHED}
        assert screen.highlighted_id == FAILED  # space moves down
        await pilot.press("space", "up", "space")  # select FAILED, unselect FINISHED again
        await pilot.pause()
        assert screen.selected == {*LADDER, FAILED}
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        compare = app.screen
        assert compare.run_ids == [LADDER[2], LADDER[1], LADDER[0], FAILED]  # table order
        labels = [r.label for r in compare.comparison.runs]
        assert labels == ["β=0.5 #1", "β=0.1", "β=0.05", "β=0.5 #2"]
        text = screen_text(app)
        assert "Comparing 4 runs" in text and "━━ β=0.05" in text and "loss" in text
        assert list(compare.comparison.diff) == ["beta", "group"]
        await pilot.press("d")
        await pilot.pause()
        assert "ladder-20251126" in screen_text(app) and "beta" in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert "rewards/margins" in screen_text(app)
        await pilot.press("w")
        await pilot.pause()
        assert compare.query_one("#cmp-rewards").title == "rejected reward"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_compare_tables_are_pure(runs: Path) -> None:
    from dpo_tui.ui.screens.compare import load_comparison

    comparison = load_comparison(runs, [LADDER[0], FINISHED, BROKEN])
    assert [r.id for r in comparison.runs] == [LADDER[0], FINISHED]
    assert comparison.errors == [f"Run {BROKEN} has no config.json"]
    diff = diff_rows(comparison)
    assert diff[0] == ["run", LADDER[0], FINISHED] and ["beta", "0.05", "0.1"] in diff and ["group", GROUP, ""] in diff
    metrics = {row[0]: row[1:] for row in metric_rows(comparison)}
    assert metrics["steps"] == ["30", "30"]
    # the lower final loss wins (bold); the best value shows in brackets when it differs from the final one
    loss = metrics["loss"]
    assert any(getattr(cell, "style", "") == "bold" for cell in loss)


async def test_delete_asks_and_refuses_active_runs(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = DpoTuiApp(make_services(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_runs(pilot)
        notes = capture_notices(app, monkeypatch)
        await highlight(pilot, screen, LADDER[1])
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen), "no dialog for a running run"
        assert notes and "stop it first" in notes[-1][0] and notes[-1][1] == "error"
        assert (runs / LADDER[1]).exists()
        await highlight(pilot, screen, FINISHED)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert f"Delete {FINISHED}?" in screen_text(app) and "cannot be undone" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert (runs / FINISHED).exists()
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: FINISHED not in rows(screen))
        assert not (runs / FINISHED).exists()
        assert not [p for p in runs.iterdir() if p.name.startswith(".deleting")]
        # a half-deleted folder can be deleted too
        await highlight(pilot, screen, BROKEN)
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: BROKEN not in rows(screen))


async def test_copy_command_line(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.form import command_line

    app = DpoTuiApp(make_services(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_runs(pilot)
        notes = capture_notices(app, monkeypatch)
        await highlight(pilot, screen, LADDER[0])
        await pilot.press("y")
        await pilot.pause()
        expected = command_line(Run(runs / LADDER[0]).config())
        assert app.clipboard == expected
        assert "--beta 0.05" in expected and f"--group {GROUP}" in expected
        assert notes[-1][0] == expected
        await highlight(pilot, screen, BROKEN)
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == expected and "No command line" in notes[-1][0]


async def test_cancel_ladder_stops_running_and_queued_members(runs: Path) -> None:
    app = DpoTuiApp(make_services(runs))
    before = (runs / LADDER[0] / "status.json").read_text()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_runs(pilot)
        await highlight(pilot, screen, FINISHED)
        assert screen.check_action("cancel_group", ()) is None  # not in a group
        await highlight(pilot, screen, LADDER[0])
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        text = screen_text(app)
        assert f"Cancel the ladder '{GROUP}'?" in text and "Cancels 1 queued run" in text
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
    # No processes to signal here (the fixture's runs are on another host): both are marked stopping.
    assert Run(runs / LADDER[1]).raw_status().state == "stopping"
    assert Run(runs / LADDER[2]).raw_status().state == "stopping"
    assert (runs / LADDER[0] / "status.json").read_text() == before


async def test_browsing_writes_nothing(runs: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*")}
    app = DpoTuiApp(make_services(runs, watch_interval=0.05))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_runs(pilot)
        await highlight(pilot, screen, LADDER[0])
        await pilot.press("g", "v")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        await until(pilot, lambda: app.run_states is not None)
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*")} == before


# --- β ladder from the experiment screen ----------------------------------------------------------
@pytest.mark.usefixtures("fake_sample")
async def test_ladder_dialog_validates_and_queues_one_run_per_beta(ui_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.core import ladder
    from dpo_tui.ui.screens.dataset import DatasetScreen
    from dpo_tui.ui.screens.experiment import ExperimentScreen
    from dpo_tui.ui.screens.ladder_dialog import LadderDialog

    launched: list[str] = []
    monkeypatch.setattr(ladder, "launch", lambda run, resume_from=None: launched.append(run.id) or 4242)
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "scanned", False))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.tokens is not None)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen) and app.screen.config is not None)
        await pilot.press("ctrl+g")
        await until(pilot, lambda: isinstance(app.screen, LadderDialog))
        dialog = app.screen
        field = dialog.query_one("#ladder-betas")
        assert field.value == "0.05,0.1,0.5"
        field.value = "0.1"
        await pilot.pause()
        error = dialog.query_one("#ladder-error")
        assert error.display and "at least two" in str(error.render())
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog, "an invalid list does not close the dialog"
        field.value = "0.05,0.05"
        await pilot.pause()
        assert "each value once" in str(error.render())
        field.value = "0.05, 0.5"
        await pilot.pause()
        assert not error.display
        await pilot.press("enter")
        await until(pilot, lambda: app.current_mode == "runs" and isinstance(app.screen, RunsScreen) and app.screen.listed
                    and len(app.screen.selected) == 2)
        screen = app.screen
        group = screen.filter_text
        assert group.startswith("ladder-") and len(launched) == 2
        created = [Run(ui_root / run_id).config() for run_id in launched]
        assert [c.beta for c in created] == [0.05, 0.5] and {c.group for c in created} == {group}
        first, second = (c.model_dump(exclude={"beta"}) for c in created)
        assert first == second, "everything but β is equal (seed and data order included)"
        assert set(rows(screen)) == set(launched) == screen.selected


@pytest.mark.usefixtures("fake_sample")
async def test_ladder_dialog_escape_cancels(ui_root: Path) -> None:
    from dpo_tui.ui.screens.experiment import ExperimentScreen
    from dpo_tui.ui.screens.ladder_dialog import LadderDialog

    calls: list[object] = []
    app = DpoTuiApp(make_services(ui_root, ladder=lambda *a: calls.append(a) or []))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "scanned", False))
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "tokens", None) is not None)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        await pilot.press("ctrl+g")
        await until(pilot, lambda: isinstance(app.screen, LadderDialog))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ExperimentScreen)
    assert calls == [] and not ui_root.exists()


# --- notifications ---------------------------------------------------------------------------------
async def test_runs_that_end_notify_once_and_old_ones_never(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = DpoTuiApp(make_services(runs))
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs(pilot)
        notes = capture_notices(app, monkeypatch)
        app.watch_runs()
        await until(pilot, lambda: app.run_states is not None)
        assert app.run_states[LADDER[1]].state == "running" and BROKEN in app.run_states
        app.watch_runs()
        await until(pilot, lambda: not app._watching)
        assert notes == [] and app.rung == [], "runs that ended before the console opened stay quiet"
        run = Run(runs / LADDER[1])
        status = run.raw_status()
        status.state, status.kind, status.message, status.ended_at = "failed", "oom", "CUDA out of memory", T0 + 300
        run.write_status(status)
        queued = Run(runs / LADDER[2])
        status = queued.raw_status()
        status.state, status.kind = "stopped", "cancelled"
        queued.write_status(status)
        app.watch_runs()
        await until(pilot, lambda: len(notes) == 2)
        assert (f"{LADDER[2]} stopped (cancelled)", "warning") in notes
        assert (f"{LADDER[1]} failed (oom): CUDA out of memory", "error") in notes
        assert app.rung == [f"dpo-tui: {LADDER[2]} stopped (cancelled)", f"dpo-tui: {LADDER[1]} failed (oom): CUDA out of memory"]
        app.watch_runs()
        await until(pilot, lambda: not app._watching)
        assert len(notes) == 2, "each ending is announced once"


async def test_watcher_runs_on_its_own_timer(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = DpoTuiApp(make_services(runs, watch_interval=0.05))
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs(pilot)
        notes = capture_notices(app, monkeypatch)
        await until(pilot, lambda: app.run_states is not None)
        run = Run(runs / LADDER[1])
        status = run.raw_status()
        status.state = "finished"
        run.write_status(status)
        (runs / LADDER[1] / "events.jsonl").open("a").write(json.dumps({"v": 1, "seq": 200, "t": T0 + 400, "type": "finished"}) + "\n")
        await until(pilot, lambda: bool(notes))
        assert notes == [(f"{LADDER[1]} finished", "information")]
