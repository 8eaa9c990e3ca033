"""Evaluation in the console, driven by keys at 80×24: ``R`` opens the Eval view (or the trade-off view of a
selection), its sort/filter/``[``/``]`` keys, a run without a report, an unreadable report, the eval dialog's
checks, and the runs screen's eval line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dpo_tui.core.eval.report import write_report
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.eval_watch import EvalPanel, job_line
from dpo_tui.ui.screens.eval_dialog import EvalDialog, EvalRequest, judge_problem
from dpo_tui.ui.screens.eval_tradeoff import TradeoffScreen
from dpo_tui.ui.screens.eval_view import EvalViewScreen
from dpo_tui.ui.screens.runs import RunsScreen
from tests.support.eval_reports import LADDER, make_report, write_ladder_reports
from tests.support.uikit import T0, make_services, screen_text, until

SIZE = (80, 24)
GROUP = "ladder-eval"
RUNS = tuple(f"20251126-2120{i:02d}-tiny-chat-b{beta:g}" for i, (beta, *_rest) in enumerate(LADDER))
PLAIN = "20251126-211000-tiny-chat-plain"


@pytest.fixture
def ladder(make_run, ui_root: Path) -> list[Path]:
    paths = [make_run(run_id, config={"beta": beta, "group": GROUP}) for run_id, (beta, *_rest) in zip(RUNS, LADDER, strict=True)]
    make_run(PLAIN, config={"beta": 0.1})
    write_ladder_reports(paths)
    return paths


async def on_runs(pilot) -> RunsScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed)
    return app.screen


async def highlight(pilot, screen: RunsScreen, run_id: str) -> None:
    table = screen.query_one("#runs-table")
    table.move_cursor(row=screen.shown.index(run_id), animate=False)
    await pilot.pause()
    assert screen.highlighted_id == run_id


async def open_view(pilot, run_id: str) -> EvalViewScreen:
    screen = await on_runs(pilot)
    await highlight(pilot, screen, run_id)
    await pilot.press("R")
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, EvalViewScreen) and app.screen.loaded)
    return app.screen


def shown_prompts(view: EvalViewScreen) -> list[str]:
    return [str(k.value) for k in view.query_one("#eval-prompts").rows]


async def test_R_opens_the_eval_view_with_the_numbers_and_the_prompts(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        view = await open_view(pilot, RUNS[1])
        text = screen_text(app)
        assert RUNS[1] in text and "heldout_prompts.txt" in text and "judge shorter" in text
        assert "words, mean" in text and "−41%" in text and "✓ sig" in text
        # Most different first: the fact the tuned model lost (Hamlet, prompt 3) tops the list.
        assert shown_prompts(view)[0] == "2"
        detail = view.query_one("#eval-detail").render()
        assert "Shakespeare" in str(detail) and "base wins" in str(detail) and "tuned ✗" in str(detail)
        await pilot.press("down")
        assert "Explain why the sky is blue." in str(view.query_one("#eval-detail").render())
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_sort_and_filter_keys(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        view = await open_view(pilot, RUNS[1])
        reads = []
        view._load = lambda *a: reads.append(a)  # a key must never read the reports again
        await pilot.press("s")
        assert view.sort == "words saved" and shown_prompts(view)[0] == "3"  # the sky answer saved most words
        await pilot.press("s", "s")
        assert view.sort == "file order" and shown_prompts(view) == ["0", "1", "2", "3", "4", "5"]
        await pilot.press("f")
        assert view.filter == "facts lost" and shown_prompts(view) == ["2"]
        await pilot.press("f")
        assert view.filter == "judge loss" and shown_prompts(view) == ["2"]
        assert "showing judge loss" in screen_text(app)
        await pilot.press("f")
        assert len(shown_prompts(view)) == 6
        assert reads == []


async def test_brackets_walk_older_and_newer_evaluations(ui_root: Path, ladder: list[Path]) -> None:
    older = make_report(RUNS[1], 0.1, -0.2, 11, 0.6, 0.55, eval_id="20251120-100000", created_at=T0 - 86400)
    write_report(ladder[1], older)
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        view = await open_view(pilot, RUNS[1])
        assert view.report.id == "20251126-213000" and "2 of 2" in screen_text(app)
        await pilot.press("right_square_bracket")  # no newer one: says so, stays
        assert view.report.id == "20251126-213000"
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "20251120-100000" in screen_text(app))
        assert view.index == 0 and "1 of 2" in screen_text(app) and "−20%" in screen_text(app)
        await pilot.press("right_square_bracket")
        assert view.index == 1


async def test_a_run_without_a_report_says_how_to_start_one(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await open_view(pilot, PLAIN)
        text = screen_text(app)
        assert f"{PLAIN} has no evaluation yet" in text and "Press E" in text


async def test_an_unreadable_report_is_one_line_naming_the_file(ui_root: Path, ladder: list[Path]) -> None:
    (ladder[0] / "eval" / "20251126-220000.json").write_text("{not json")
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        view = await open_view(pilot, RUNS[0])
        text = screen_text(app)
        assert "unreadable: 20251126-220000.json: not valid JSON" in text
        assert view.report is not None and "words, mean" in text  # the good report still shows


async def test_a_ladders_group_opens_the_tradeoff_view(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, RUNS[0])
        await pilot.press("g", "R")
        await until(pilot, lambda: isinstance(app.screen, TradeoffScreen) and app.screen.ladder is not None)
        trade = app.screen
        assert [label for _, label, _ in trade.ladder.items] == ["β=0.05", "β=0.1", "β=0.3", "β=0.5"]
        await until(pilot, lambda: "● β=0.05" in screen_text(app))
        text = screen_text(app)
        assert "◆" in text and "y: facts correct" in text
        assert "−52% ✓ sig" in text and "92→67%" in text
        await pilot.press("y")
        await until(pilot, lambda: "judge win rate" in screen_text(app))
        await pilot.press("y")
        await until(pilot, lambda: "y: pair accuracy" in screen_text(app))


async def test_tradeoff_leaves_out_runs_without_a_report(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await on_runs(pilot)
        app.push_screen(TradeoffScreen([RUNS[0], RUNS[3], PLAIN]))
        await until(pilot, lambda: isinstance(app.screen, TradeoffScreen) and app.screen.ladder is not None)
        assert f"left out: {PLAIN}: no evaluation yet" in screen_text(app)
        assert len(app.screen.ladder.items) == 2


async def test_the_runs_detail_line_shows_the_newest_evaluation(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, RUNS[1])
        assert "eval −41% words · facts 92→83% (R)" in screen.query_one("#runs-detail").plain
        await highlight(pilot, screen, PLAIN)
        assert "eval " not in screen.query_one("#runs-detail").plain


# --- the eval dialog ---------------------------------------------------------------------------------
async def open_dialog(pilot, run_id: str) -> EvalDialog:
    screen = await on_runs(pilot)
    await highlight(pilot, screen, run_id)
    await pilot.press("E")
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, EvalDialog))
    return app.screen


async def test_the_dialog_prefills_the_samples_files_and_checks_the_judge_as_typed(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(pilot, PLAIN)
        assert dialog.query_one("#evaldialog-prompts").value.endswith("prefs/heldout_prompts.txt")
        assert dialog.query_one("#evaldialog-facts").value.endswith("prefs/heldout_facts.jsonl")
        assert dialog.query_one("#evaldialog-samples").value == "3" and dialog.query_one("#evaldialog-tokens").value == "128"
        dialog.query_one("#evaldialog-judge").value = "regex:("
        await until(pilot, lambda: "does not compile" in screen_text(app))
        dialog.query_one("#evaldialog-judge").value = "shorter"
        await until(pilot, lambda: not dialog.query_one("#evaldialog-judge-error").display)
        # A field that cannot be right is refused in the dialog, before any job starts: no traceback.
        dialog.query_one("#evaldialog-samples").value = "many"
        dialog.query_one("#evaldialog-samples").focus()
        await pilot.press("enter")
        await until(pilot, lambda: "samples must be a whole number" in screen_text(app))
        assert isinstance(app.screen, EvalDialog) and not dialog.starting
        await pilot.press("escape")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_E_with_a_group_selected_evaluates_all_of_it(ui_root: Path, ladder: list[Path]) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        screen = await on_runs(pilot)
        await highlight(pilot, screen, RUNS[2])
        await pilot.press("g", "E")
        await until(pilot, lambda: isinstance(app.screen, EvalDialog))
        assert sorted(app.screen.run_ids) == sorted(RUNS)
        assert "4 runs" in screen_text(app)


def test_request_arguments_and_judge_problems() -> None:
    args = EvalRequest(["r"], prompts=" ~/p.txt ", judge="", samples="0", tokens="64", checkpoint="best").arguments()
    assert args["prompts"] == Path("~/p.txt").expanduser() and args["facts"] is None and args["judge"] is None
    assert args["samples"] == 0 and args["max_new_tokens"] == 64 and args["checkpoint"] == "best"
    assert judge_problem("") == "" and judge_problem("shorter") == ""
    assert judge_problem("regex:") != ""
    from dpo_tui.core.errors import UserError

    with pytest.raises(UserError, match="max tokens must be at least 1"):
        EvalRequest(["r"], tokens="0").arguments()


def test_job_lines() -> None:
    running = SimpleNamespace(id="20251126-213000", state="running", stage="generating", done=120, total=432, eta_s=65.0,
                              error=None, run_ids=["a", "b"], path=Path("/x"))
    assert job_line(running) == "eval 20251126-213000: generating 120/432 · ETA 1m05s (a +1)"
    done = SimpleNamespace(**{**running.__dict__, "state": "done"})
    assert job_line(done) == "eval 20251126-213000: done (a +1) · R shows the results"
    failed = SimpleNamespace(**{**running.__dict__, "state": "failed", "error": "CUDA out of memory"})
    assert job_line(failed).endswith("failed (a +1): CUDA out of memory")


async def test_a_started_evaluation_is_followed_on_the_runs_screen(ui_root: Path, ladder: list[Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.core.job_folder import write_status
    from dpo_tui.ui.screens import eval_dialog

    job_dir = ui_root / ".eval" / "20251126-230000"

    def fake_start(root: Path, request: EvalRequest) -> Path:
        job_dir.mkdir(parents=True)
        write_status(job_dir, state="done", id=job_dir.name, run_ids=request.run_ids, stage="done", done=6, total=6)
        return job_dir

    monkeypatch.setattr(eval_dialog, "start_request", fake_start)
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await open_dialog(pilot, RUNS[0])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        panel = app.screen.query_one(EvalPanel)
        # The line wraps at 80 columns; read it without the line breaks.
        await until(pilot, lambda: panel.display and "R shows the results" in " ".join(screen_text(app).split()))


async def test_compare_shows_eval_rows_and_the_monitor_opens_the_eval_view(ui_root: Path, ladder: list[Path]) -> None:
    from dpo_tui.ui.screens.compare import CompareScreen, metric_rows
    from dpo_tui.ui.screens.monitor import MonitorScreen

    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=SIZE) as pilot:
        await on_runs(pilot)
        app.push_screen(CompareScreen([RUNS[0], PLAIN]))
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        rows = {str(row[0]): [str(c) for c in row[1:]] for row in metric_rows(app.screen.comparison)}
        assert rows["eval: words change"] == ["−52% ✓ sig", "–"] and rows["eval: facts (tuned)"] == ["67%", "–"]
        app.pop_screen()
        app.open_monitor(RUNS[1])
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.run_id == RUNS[1])
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, EvalViewScreen) and app.screen.loaded)
        assert app.screen.run_id == RUNS[1] and app.screen.report is not None
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen))
        await pilot.press("E")
        await until(pilot, lambda: isinstance(app.screen, EvalDialog))
        assert app.screen.run_ids == [RUNS[1]]
