"""Keys follow the focus: in a text box printable keys are text, the header and footer show the keys
that work there, and escape leaves the box. Every test runs at 80×24."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.dataset import DatasetScreen
from dpo_tui.ui.screens.experiment import ExperimentScreen
from dpo_tui.ui.screens.models import ModelScreen
from tests.support.uikit import make_services, screen_text, to_dataset, to_experiment, until

pytestmark = pytest.mark.usefixtures("fake_sample")
SIZE = (80, 24)


def header(app: DpoTuiApp) -> str:
    return screen_text(app).splitlines()[0]


def footer(app: DpoTuiApp) -> str:
    return screen_text(app).splitlines()[-1]


async def test_experiment_digits_are_text_and_the_header_says_f_keys(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        exp = await to_experiment(pilot, app)
        rank = exp.query_one("#f-lora_rank")
        rank.focus()
        await pilot.pause()
        assert "F2 Setup" in header(app) and "F3 Runs" in header(app) and "2 Runs" not in header(app).replace("F3 Runs", "")
        before = rank.value
        await pilot.press("end", "2", "question_mark")
        await pilot.pause()
        assert rank.value == before + "2?" and app.current_mode == "setup" and app.screen is exp
        assert "^q Quit" in footer(app) and "esc" not in footer(app)
        await pilot.press("f1")  # ? is text here; F1 lists the keys, escape's meaning in a box included
        await pilot.pause()
        table = app.screen.query_one("#help-table")
        actions = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert any(a.startswith("Leave the text box") for a in actions)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is exp)
        await pilot.press("escape")  # leaves the field: the digits are keys again
        await pilot.pause()
        assert exp.focused is exp.query_one("#experiment-form") and rank.value == before + "2?"
        assert "1 Setup" in header(app) and "2 Runs" in header(app) and "F3" not in header(app)
        await pilot.press("2")
        await until(pilot, lambda: app.current_mode == "runs")


async def test_dataset_path_box_letters_are_text_and_escape_leaves_it(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        dataset = await to_dataset(pilot, app)
        assert "r Report" in footer(app)
        await pilot.press("o")
        await pilot.press(*"prefs")
        await pilot.pause()
        box = dataset.query_one("#dataset-source")
        assert box.value == "prefs" and dataset.query_one("#dataset-tabs").active == "report"
        # Only keys that work in the box: no letters, F1 for the keys list, escape leaves the box.
        assert "r Report" not in footer(app) and "p Pairs" not in footer(app)
        assert "f1 Keys" in footer(app) and "esc Back" not in footer(app)
        assert "F2 Setup" in header(app)
        await pilot.press("escape")
        await pilot.pause()
        assert dataset.focused is dataset.query_one("#dataset-samples") and box.value == "prefs"
        assert isinstance(app.screen, DatasetScreen)
        assert "r Report" in footer(app) and "esc Back" in footer(app)
        await pilot.press("l")
        await pilot.pause()
        assert dataset.query_one("#dataset-tabs").active == "lengths" and box.value == "prefs"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen))


async def test_model_filter_escape_leaves_the_box_then_clears(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
        screen = app.screen
        await pilot.press("slash", *"tiny")
        await pilot.pause()
        filt = screen.query_one("#model-filter")
        assert filt.value == "tiny" and "F2 Setup" in header(app)
        await pilot.press("escape")
        await pilot.pause()
        assert screen.focused is screen.query_one("#models-table") and filt.value == "tiny"
        assert "1 Setup" in header(app)
        await pilot.press("escape")  # on the list: clears the filter
        await pilot.pause()
        assert filt.value == ""


async def test_broken_key_without_broken_folders_says_so(ui_root: Path) -> None:
    notes: list[str] = []
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await pilot.press("b")
        await pilot.pause()
        assert notes == ["No broken folders: every model found can be used."]
        assert app.screen.show_broken


async def test_model_help_lists_enter(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
        await pilot.press("question_mark")
        await pilot.pause()
        table = app.screen.query_one("#help-table")
        rows = [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
        assert ("⏎", "Use the highlighted model", "here") in rows
        assert not any(row[0] == "esc" and "Leave" in row[1] for row in rows), "no text box has focus"


async def test_palette_lists_the_console_actions_once(ui_root: Path) -> None:
    from dpo_tui.ui.commands import BindingsProvider

    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
        titles = [title for title, _, _ in BindingsProvider(app.screen)._commands()]
        assert len(titles) == len(set(titles)), titles
        assert titles.count("Quit") == 1
        assert not any(word in " ".join(titles) for word in ("Maximize", "Screenshot", "Cursor", "Keys palette"))
        assert "Setup: model, dataset, experiment" in titles and "Runs overview" in titles
        assert "Model: Choose" in titles and "Model: Next: dataset" in titles
        # Other modes' actions are found too (picking one switches there): the runs screen's keys.
        assert "Runs: Compare" in titles and "Monitor: Stop" in titles
        # Every runs-screen action is listed by its description, so one added there (Export,
        # ``runs.export``) is found from any mode without a palette entry of its own.
        from dpo_tui.ui.screens.runs import RunsScreen

        assert all(f"Runs: {b.description}" in titles for b in RunsScreen.BINDINGS if b.id)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"setup")
        await pilot.pause(0.3)
        assert "Setup: model, dataset, experiment" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        # Picking another mode's action switches there and runs it.
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        run_compare = next(cb for title, _, cb in BindingsProvider(app.screen)._commands() if title == "Runs: Compare")
        run_compare()
        await until(pilot, lambda: app.current_mode == "runs" and any("Compare needs" in n for n in notes))


async def test_checkboxes_differ_without_colour(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        exp = await to_experiment(pilot, app)
        assert isinstance(exp, ExperimentScreen)
        box = next(iter(exp.query("Checkbox")))
        box.value = False
        await pilot.pause()
        off = box.render().plain
        box.value = True
        await pilot.pause()
        on = box.render().plain
        assert off.startswith("▐ ▌") and on.startswith("▐✓▌")


async def test_save_toml_defaults_beside_the_runs(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await to_experiment(pilot, app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen.query("#save-path"))
        path = Path(app.screen.query_one("#save-path").value)
        assert path.parent == ui_root.parent and path.name.startswith("dpo-tiny-chat-b") and path.suffix == ".toml"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen))
