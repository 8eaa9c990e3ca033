"""The Pairs mode: the generate form's defaults, the label summary, train on pairs.jsonl, round two from a run,
and (with the generate job's core, from branch PG) the folder list and its 80×24 snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core import paths
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.pairs_form import (
    SAMPLE_INSTRUCTIONS,
    GenerateRequest,
    default_request,
    label_command,
    summary_lines,
)
from tests.support.snap import settle
from tests.support.uikit import NOW, make_services, screen_text, until
from tests.unit.test_pairs_queue import write_candidates


def test_default_request_for_the_sample_model(tmp_path: Path, fake_sample: Path) -> None:
    request = default_request(None, None, NOW, tmp_path / "pairs")
    assert request.model == "sample" and request.n == "2" and request.temperature == "0.8"
    assert request.prompts == str(paths.sample_heldout_prompts_path())
    assert (request.instruction_a, request.instruction_b) == SAMPLE_INSTRUCTIONS
    assert request.out == str(tmp_path / "pairs" / "20251126-213000-tiny-chat")
    other = default_request("/models/Qwen2.5-0.5B", "20251126-211000-tiny-chat-b0.1", NOW, tmp_path)
    assert other.prompts == "" and other.instruction_a == "" and other.adapter == "20251126-211000-tiny-chat-b0.1"
    assert other.out.endswith("-Qwen2.5-0.5B-round2")


def test_request_arguments_refuse_bad_numbers(tmp_path: Path) -> None:
    from dpo_tui.core.errors import UserError

    good = GenerateRequest("sample", "", "p.txt", "4", "0.7", "", "", str(tmp_path / "out"))
    args = good.arguments(tmp_path)
    assert args["n"] == 4 and args["temperature"] == 0.7 and args["adapter"] is None and args["runs_root"] == tmp_path
    for field, value in (("n", "two"), ("temperature", "hot"), ("prompts", ""), ("out", "")):
        bad = GenerateRequest(**{**good.__dict__, field: value})
        with pytest.raises(UserError):
            bad.arguments(tmp_path)


def test_label_command_and_summary_lines(tmp_path: Path) -> None:
    assert label_command(tmp_path, "shorter")[-4:] == [str(tmp_path), "--rule", "shorter", "--json"]
    assert label_command(tmp_path, "hand")[-3:] == ["--by", "hand", "--json"]
    summary = {"pairs": 40, "prompts": 43, "format": "standard", "decided_by": "rule shorter",
               "dropped": {"tie": 2, "empty": 1, "near_duplicate": 0}, "empty_candidates": 0,
               "lint": {"ok": True, "rows": 40, "errors": [], "warnings": []}, "output": "/x/pairs.jsonl"}
    assert summary_lines(summary) == ["40 pairs from 43 prompts (standard), decided by rule shorter",
                                      "dropped: tie 2, empty 1", "data check: OK, 40 usable rows"]
    assert summary_lines({"pairs": 3}) == ["pairs 3 written"]


async def test_train_on_pairs_opens_the_experiment_with_that_dataset(ui_root: Path, fake_sample: Path, tmp_path: Path) -> None:
    from dpo_tui.ui.screens.experiment import ExperimentScreen
    from dpo_tui.ui.screens.pairs import train_on

    dataset = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"w{i} w{i + 1}", "chosen": f"w{i + 2}", "rejected": f"w{i + 3} w{i + 4} w{i + 5}"} for i in range(20)]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        train_on(app, dataset, "sample")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        assert app.current_mode == "setup" and app.setup.dataset == str(dataset)
        assert str(dataset.name) in screen_text(app) or app.setup.dataset_label() == str(dataset)


def pairs_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DPO_TUI_HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / "pairs"
    from dpo_tui.core.job_folder import write_status
    from dpo_tui.core.pairs.plan import plan_pairs

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Q0?\nQ1?\nQ2?\n")
    plan = plan_pairs(model="sample", prompts=prompts, out=root / "20251126-210000-tiny-chat", n=2)
    folder = write_candidates(root / "20251126-210000-tiny-chat", [["short", "a longer answer"]] * 3)
    (folder / "plan.json").write_text(plan.to_json())
    write_status(folder, state="done", created_at=NOW - 60, started_at=NOW - 50, ended_at=NOW - 5, done=3, total=3)
    (folder / "labels.jsonl").write_text(json.dumps({"index": 0, "decision": "a", "chosen": "c0", "rejected": "c1",
                                                     "edited": {}, "t": NOW}) + "\n")
    return folder


async def test_pairs_mode_lists_folders_and_opens_the_queue(ui_root: Path, fake_sample: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.screens.pairs import PairsScreen
    from dpo_tui.ui.screens.pairs_queue import PairsQueueScreen

    folder = pairs_home(monkeypatch, tmp_path)
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: isinstance(app.screen, PairsScreen) and app.screen.listed)
        screen = app.screen
        row = screen.highlighted
        assert row is not None and row.path == folder and row.state == "done" and row.labelled == 1
        assert "5 Pairs" in screen_text(app) and folder.name in screen_text(app)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, PairsQueueScreen))
        assert app.screen.queue.current().index == 1
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("n")
        await until(pilot, lambda: type(app.screen).__name__ == "GenerateDialog")


async def test_round_two_from_the_runs_screen(ui_root: Path, fake_sample: Path, make_run, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.screens.pairs_form import GenerateDialog
    from dpo_tui.ui.screens.runs import RunsScreen

    pairs_home(monkeypatch, tmp_path)
    make_run("20251126-211000-tiny-chat-b0.1")
    app = DpoTuiApp(make_services(ui_root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed)
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, GenerateDialog))
        assert app.current_mode == "pairs"
        assert app.screen.request().adapter == "20251126-211000-tiny-chat-b0.1"


def test_pairs_screen_snapshot(snap_compare, ui_root: Path, fake_sample: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.screens.pairs import PairsScreen

    pairs_home(monkeypatch, tmp_path)

    async def run_before(pilot) -> None:
        app = pilot.app
        await pilot.press("5")
        await settle(pilot, lambda: isinstance(app.screen, PairsScreen) and app.screen.listed)

    assert snap_compare(DpoTuiApp(make_services(ui_root), initial_mode="runs"), terminal_size=(80, 24), run_before=run_before)
