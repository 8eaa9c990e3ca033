"""At 80×24: ``L`` evaluates a whole group and ``T`` opens its trade-off from the runs screen, a run without a
group says why not, the runs detail line keeps the eval summary's facts, the Pairs screen's empty state is
whole, the header lists Pairs in every mode, and the eval dialog names its fields (not the CLI's flags)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.eval_dialog import EvalDialog, console_wording
from dpo_tui.ui.screens.eval_tradeoff import TradeoffScreen
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.uikit import make_services, screen_text, until
from tests.ui.test_eval_view import (
    PLAIN,
    RUNS,
    SIZE,
    highlight,
    ladder,  # noqa: F401 - the fixture: the β ladder "ladder-eval" with reports, and a plain run
    on_runs,
)

with_ladder = pytest.mark.usefixtures("ladder")


@with_ladder
async def test_L_opens_the_eval_dialog_for_every_run_of_the_group(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, RUNS[2])
        assert not screen.selected  # nothing selected: the key takes the group itself
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, EvalDialog))
        assert sorted(app.screen.run_ids) == sorted(RUNS)
        assert "Evaluate 4 runs (base evaluated once)" in screen_text(app)


@with_ladder
async def test_T_opens_the_trade_off_of_the_group_or_of_the_selection(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, RUNS[0])
        await pilot.press("T")
        await until(pilot, lambda: isinstance(app.screen, TradeoffScreen) and app.screen.ladder is not None)
        assert sorted(app.screen.run_ids) == sorted(RUNS) and len(app.screen.ladder.items) == len(RUNS)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        # Two selected runs (one outside any group) win over the highlighted run's group.
        await highlight(pilot, screen, PLAIN)
        await pilot.press("space")
        await highlight(pilot, screen, RUNS[1])
        await pilot.press("space")
        await highlight(pilot, screen, RUNS[3])
        await pilot.press("T")
        await until(pilot, lambda: isinstance(app.screen, TradeoffScreen))
        assert sorted(app.screen.run_ids) == sorted([PLAIN, RUNS[1]])


@with_ladder
async def test_a_run_without_a_group_says_why_L_and_T_do_nothing(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, PLAIN)
        assert screen.check_action("evaluate_group", ()) is None and screen.check_action("tradeoff", ()) is None
        assert "no group" in (screen.why_not("evaluate_group", ()) or "")
        assert "two or more selected" in (screen.why_not("tradeoff", ()) or "")
        await pilot.press("L")
        await until(pilot, lambda: any("Evaluate ladder needs a run of a group" in str(n.message)
                                       for n in app._notifications))
        assert app.screen is screen


@with_ladder
async def test_the_detail_line_keeps_the_facts_at_80_columns(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, RUNS[1])
        assert "eval −41% words · facts 92→83% (R)" in screen.query_one("#runs-detail").plain
        shown = " ".join(line.strip() for line in screen_text(app).splitlines())  # what fits on the panel's two rows
        assert "eval −41% words · facts 92→83% (R)" in shown


async def test_the_pairs_empty_state_is_whole_and_the_header_lists_pairs(ui_root: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.screens.pairs import PairsScreen

    monkeypatch.setenv("DPO_TUI_HOME", str(tmp_path / "a-rather-long-home-folder-name" / "for-the-operator"))
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert "5 Pairs" in screen_text(app).splitlines()[0]  # listed outside the Pairs mode too
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, PairsScreen) and app.screen.listed)
        text = screen_text(app)
        assert "Press n to generate candidates for a prompts file." in text
        assert "No pair folders yet in" in text


def test_the_dialog_names_its_fields_not_the_cli_flags() -> None:
    text = "Run r1 has no held-out prompts (no eval split)\nHint: give --prompts FILE (one prompt a line, or .jsonl)"
    assert console_wording(text).endswith("Hint: fill in the prompts field (one prompt a line, or .jsonl)")
    assert console_wording("--samples must be at most 16") == "samples must be at most 16"


async def test_the_dialog_refusal_says_fill_in_the_prompts_field(ui_root: Path, make_run, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    run_dir = make_run(PLAIN, config={"beta": 0.1, "dataset": str(data), "eval_fraction": 0})
    adapter = run_dir / "adapter"
    from tests.unit.test_init_adapter_config import write_adapter

    write_adapter(adapter)
    (adapter / "COMPLETE").write_text("ok\n")
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, PLAIN)
        await pilot.press("E")
        await until(pilot, lambda: isinstance(app.screen, EvalDialog))
        dialog = app.screen
        assert dialog.query_one("#evaldialog-prompts").value == ""
        await pilot.press("enter")
        await until(pilot, lambda: bool(dialog.error))
        assert "fill in the prompts field" in dialog.error and "--prompts" not in dialog.error, dialog.error
