"""The Eval view's and trade-off view's rows, points and summary lines (core/eval/view.py), without a Textual app."""

from __future__ import annotations

from pathlib import Path

from dpo_tui.core.eval import view
from dpo_tui.core.eval.report import Change, PromptRow, write_report
from tests.support.eval_reports import LADDER, make_report


def rows_by_measure(report) -> dict[str, view.MetricRow]:
    return {row.measure: row for row in view.metric_rows(report)}


def test_metric_rows_mark_significance_and_name_every_measure() -> None:
    rows = rows_by_measure(make_report("r", 0.1, -0.41, 10, 0.66, 0.64))
    assert list(rows) == ["words, mean", "words, median", "words, p90", "tokens, mean", "empty", "truncated", "looping",
                          "sampled words ×3", "pair accuracy", "pair margin", "facts correct", "win rate",
                          "win rate (LC)", "no verdict"]
    words = rows["words, mean"]
    assert words.cells() == ["words, mean", "46", "27.1", "−18.9 −41%", "[−23, −14]", "✓ sig"]
    assert rows["facts correct"].cells() == ["facts correct", "92% 11/12", "83% 10/12", "−8 pts", "[−20, +3.7]", "n.s."]
    assert rows["pair accuracy"].significant is True  # [55, 77]% excludes 50%
    assert rows["win rate"].cells()[3:] == ["27W 15L 4T", "[51, 77]%", "✓ sig"]
    assert rows["no verdict"].tuned == "2" and rows["no verdict"].change == "of 48"
    assert rows["empty"].note == ""  # no interval: neither mark


def test_a_change_whose_interval_includes_zero_is_not_significant() -> None:
    rows = rows_by_measure(make_report("r", 0.5, -0.06, 12, 0.55, 0.52))
    assert rows["words, mean"].note == "n.s." and rows["win rate"].note == "n.s."


def test_optional_sections_are_left_out() -> None:
    report = make_report("r", judge=False)
    report.pairs = report.facts = None
    report.behaviour.sampled_words = None
    measures = [row.measure for row in view.metric_rows(report)]
    assert measures == ["words, mean", "words, median", "words, p90", "tokens, mean", "empty", "truncated", "looping"]
    assert view.summary_text(report) == "words −41%"
    assert "judge none" in view.header_lines(report)[2]


def test_header_names_run_material_judge_and_eval() -> None:
    lines = view.header_lines(make_report("run-1"))
    assert lines[0] == "run-1 · final · β=0.1 · base tiny-chat"
    assert lines[1] == "prompts heldout_prompts.txt (48) · facts heldout_facts.jsonl · pairs heldout_pairs.jsonl"
    assert lines[2].startswith("judge shorter · samples 3 · eval 20251126-213000, 2025-11-2")  # the date is local time


def test_prompt_order_puts_fact_flips_and_decided_verdicts_first() -> None:
    rows = make_report("r").prompts
    assert view.prompt_order(rows) == [2, 3, 4, 0, 1, 5]
    assert view.prompt_order(rows, "words saved")[0] == 3
    assert view.prompt_order(rows, "judge verdict")[0] == 2  # the judge's loss first
    assert view.prompt_order(rows, "file order") == [0, 1, 2, 3, 4, 5]
    assert view.prompt_order(rows, filter_="facts lost") == [2]
    assert view.prompt_order(rows, filter_="judge loss") == [2]
    assert view.prompt_order([], filter_="facts lost") == []


def test_prompt_cells_and_detail() -> None:
    row = make_report("r").prompts[2]
    assert view.prompt_cells(2, row) == ["3", "Who wrote Hamlet?", "15", "3", "−12", "base", "✓→✗"]
    detail = view.prompt_detail(row)
    assert detail.prompt == "Who wrote Hamlet?"
    assert dict(detail.lines) == {
        "expected": "Shakespeare  · base ✓ · tuned ✗",
        "judge": "base wins: the tuned answer drops the fact",
        "base (15 words, eos)": row.base,
        "tuned (3 words, eos)": "A famous playwright.",
    }
    empty = PromptRow(prompt="p", base="", tuned="x", base_words=0, tuned_words=1)
    assert dict(view.prompt_detail(empty).lines)["base (0 words)"] == "(empty answer)"
    assert view.prompt_cells(0, empty)[-2:] == ["–", ""]


def test_numbers_read_with_signs_and_percent() -> None:
    assert view.signed_pct(-0.412) == "−41%" and view.signed_pct(0.05) == "+5%" and view.signed_pct(None) == "–"
    assert view.signed(-3) == "−3" and view.signed(0) == "0" and view.signed(float("nan")) == "–"
    assert view.pct(0.916) == "92%"
    assert view.excludes((0.51, 0.7), 0.5) is True and view.excludes((0.4, 0.7), 0.5) is False
    change = Change(base=10, tuned=8, diff=-2, rel=-0.2, ci=(-3, 0.5))
    assert not change.ci_excludes_zero and view.sig_text(change.ci_excludes_zero) == "n.s."


def test_summary_lines_and_compare_rows() -> None:
    report = make_report("r", 0.1, -0.41, 10, 0.66, 0.64)
    assert view.summary_text(report) == "words −41% · facts 92→83%"
    assert view.summary_text(report, wide=True) == "words −41% · facts 92→83% · pair acc 66% · win 64%"
    assert view.compare_rows([None, None]) == []
    assert view.compare_rows([report, None]) == [
        ["eval: words change", "−41% ✓ sig", "–"],
        ["eval: facts (tuned)", "83%", "–"],
        ["eval: pair accuracy", "66%", "–"],
        ["eval: win rate", "64%", "–"],
    ]


def ladder_items():
    return [(f"run-{beta:g}", f"β={beta:g}", make_report(f"run-{beta:g}", beta, rel, facts, acc, win))
            for beta, rel, facts, acc, win in LADDER]


def test_tradeoff_points_rows_and_base_reference() -> None:
    items = ladder_items()
    points = view.tradeoff_points(items, "facts correct")
    assert [(p.label, round(p.x), round(p.y)) for p in points] == [("β=0.05", -52, 67), ("β=0.1", -41, 83),
                                                                  ("β=0.3", -22, 92), ("β=0.5", -6, 100)]
    reports = [r for _, _, r in items]
    assert round(view.base_y(reports, "facts correct")) == 92
    assert view.base_y(reports, "judge win rate") == 50.0
    assert [round(p.y) for p in view.tradeoff_points(items, "judge win rate")] == [68, 64, 58, 52]
    assert [round(p.y) for p in view.tradeoff_points(items, "pair accuracy")] == [71, 66, 61, 55]
    assert view.tradeoff_rows(items)[0] == ["β=0.05", "0.05", "−52% ✓ sig", "[−62%, −42%]", "92→67%", "71%", "68%"]
    assert view.tradeoff_rows(items)[3][2] == "−6% n.s."


def test_scatter_places_labelled_points_and_the_base() -> None:
    items = ladder_items()
    points = view.tradeoff_points(items, "facts correct")
    plot = view.scatter(points, 60, 12, view.base_y([r for _, _, r in items], "facts correct"))
    assert plot is not None and len(plot.rows) == 12 and all(len(r) <= 60 for r in plot.rows)
    text = "\n".join(plot.rows)
    for label in ("β=0.05", "β=0.1", "β=0.5"):
        assert f"● {label}" in text
    assert view.BASE_MARK in text and "0%" in plot.rows[-1]
    # Higher quality is higher up; a larger cut in words is further left.
    where = {points[i].label: (row, col) for row, col, i in plot.marks}
    assert where["β=0.5"][0] < where["β=0.05"][0] and where["β=0.05"][1] < where["β=0.5"][1]
    for row, col, _ in plot.marks:
        assert plot.rows[row][col] == view.MARK
    assert view.scatter([view.TradeoffPoint("a", "a", None, 50.0)], 40, 10, 50.0) is None


def test_summary_cache_reads_a_report_once_until_the_folder_changes(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run-1"
    run.mkdir()
    (tmp_path / "run-2").mkdir()
    cache = view.SummaryCache()
    paths = {"run-1": run, "run-2": tmp_path / "run-2"}
    assert cache.lines(paths) == {}
    write_report(run, make_report("run-1"))
    assert cache.lines(paths) == {"run-1": "words −41% · facts 92→83%"}
    reads: list[Path] = []
    real = view.latest_report
    monkeypatch.setattr(view, "latest_report", lambda p: reads.append(p) or real(p))
    assert cache.lines(paths) == {"run-1": "words −41% · facts 92→83%"}
    assert reads == []  # unchanged folder: not read again
    newer = make_report("run-1", words_rel=-0.2, eval_id="20251127-000000", created_at=make_report("x").created_at + 60)
    write_report(run, newer)
    import os

    os.utime(run / "eval", ns=(1, 10**18))  # a folder mtime that surely differs from the first read
    assert cache.lines(paths) == {"run-1": "words −20% · facts 92→83%"} and reads == [run]
