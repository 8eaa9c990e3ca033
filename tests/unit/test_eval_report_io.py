"""The evaluation report file: round trip, newest first, and damaged files named with why."""

from __future__ import annotations

import json
from pathlib import Path

from dpo_tui.core.eval.report import (
    Behaviour,
    Change,
    EvalReport,
    EvalSettings,
    Lengths,
    latest_report,
    list_reports,
    read_report,
    write_report,
)


def _report(eval_id: str, created: float, tuned_words: float = 10.0) -> EvalReport:
    lengths = Lengths(n=2, mean_words=20.0)
    words = Change(base=20.0, tuned=tuned_words, diff=tuned_words - 20.0, rel=(tuned_words - 20.0) / 20.0, ci=(-12.0, -8.0))
    return EvalReport(id=eval_id, run_id="run-a", base_model="/m", adapter_path="/m/adapter", created_at=created,
                      settings=EvalSettings(prompts_file="p.txt", prompts=2),
                      behaviour=Behaviour(base=lengths, tuned=lengths, words=words, tokens=words))


def test_round_trip_and_latest(tmp_path: Path) -> None:
    write_report(tmp_path, _report("20261205-100000", 100.0, 12.0))
    path = write_report(tmp_path, _report("20261205-110000", 200.0, 9.0))
    assert json.loads(path.read_text())["schema"] == "dpo-tui.eval"
    back = read_report(path)
    assert back.behaviour.words.tuned == 9.0 and back.behaviour.words.ci_excludes_zero
    latest = latest_report(tmp_path)
    assert latest is not None and latest.id == "20261205-110000"
    summary = latest.summary()
    assert summary["words_change"] == -0.55 and summary["pair_accuracy"] is None
    assert not list(tmp_path.joinpath("eval").glob(".*")), "no temporary file left behind"


def test_damaged_reports_are_listed_with_why_and_never_raise(tmp_path: Path) -> None:
    write_report(tmp_path, _report("20261205-100000", 100.0))
    folder = tmp_path / "eval"
    (folder / "torn.json").write_text('{"schema": "dpo-tui.eval", "version": 1, "id": ')
    (folder / "other.json").write_text('{"hello": 1}')
    (folder / "newer.json").write_text(json.dumps({"schema": "dpo-tui.eval", "version": 99}))
    (folder / "latin1.json").write_bytes(b'{"schema": "caf\xe9"}')
    (folder / "missing-field.json").write_text(json.dumps({"schema": "dpo-tui.eval", "version": 1, "id": "x"}))
    (folder / "dir.json").mkdir()
    good, bad = list_reports(tmp_path)
    assert [r.id for r in good] == ["20261205-100000"]
    why = {b.path.name: b.why for b in bad}
    assert "not valid JSON" in why["torn.json"]
    assert "not a dpo-tui.eval report" in why["other.json"]
    assert "newer" in why["newer.json"]
    assert "UTF-8" in why["latin1.json"]
    assert "run_id" in why["missing-field.json"] or "Field required" in why["missing-field.json"]
    assert "dir.json" in why


def test_no_eval_folder_reads_as_no_reports(tmp_path: Path) -> None:
    assert list_reports(tmp_path) == ([], [])
    assert latest_report(tmp_path) is None
    (tmp_path / "eval").write_text("a file where the folder should be")
    assert list_reports(tmp_path) == ([], [])
