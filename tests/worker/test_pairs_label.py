"""``dpo-tui pairs label`` and labelling by a judge: the rule judge, a judge without verdicts, agreement, refusals.

The folders are written by hand in the formats of the pairs folder (candidates.jsonl, labels.jsonl).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.judge import Verdict
from dpo_tui.core.pairs.labelling import Candidate, PromptRow, label_rows, parse_rule, rule_labeller
from dpo_tui.worker.judges import build_judge
from dpo_tui.worker.pairs_label import judge_labeller
from tests.support.cli import run_cli_inprocess
from tests.support.reliability import record_outcome

SUITE = "bad-input"


class NoVerdictJudge:
    """Test double for an external judge that never gives a usable answer (an endpoint returning garbage)."""

    name = "no-verdict"

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        self.calls += 1
        return Verdict(None, "unparsable reply")

    def close(self) -> None:
        self.closed = True


class CountingJudge:
    """Test double wrapping a real rule judge, counting single-order calls."""

    def __init__(self, spec: str) -> None:
        self.inner = build_judge(spec)
        self.name = self.inner.name
        self.calls = 0

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        self.calls += 1
        return self.inner.compare(prompt, a, b)


def prompt_row(index: int, *texts: str) -> PromptRow:
    return PromptRow(index, f"Q{index}?", [{"role": "user", "content": f"Q{index}?"}], False,
                     [Candidate(f"c{k}", t, len(t.split()), "eos") for k, t in enumerate(texts)])


def write_folder(d: Path, rows: list[list[str]], conversational: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "candidates.jsonl", "w", encoding="utf-8") as fh:
        for i, texts in enumerate(rows):
            msgs = [{"role": "user", "content": f"Question {i}?"}]
            if conversational:
                msgs = [{"role": "system", "content": "Be kind."}, *msgs]
            fh.write(json.dumps({
                "index": i, "line": i + 1, "prompt": f"Question {i}?", "messages": msgs,
                "conversational": conversational,
                "candidates": [{"id": f"c{k}", "text": t, "tokens": len(t.split()), "finish": "eos", "seed": k,
                                "instruction": None} for k, t in enumerate(texts)],
                "provenance": {"model": "sample", "adapter": None, "created_at": 0.0}}) + "\n")
    return d


ROWS = [["Paris.", "The capital of France is Paris, on the Seine."],
        ["Four.", "Two plus two makes four, as every child learns."],
        ["same answer", "same answer"],
        ["Blue.", "The sky looks blue because of Rayleigh scattering."]]


# -- the judge path -----------------------------------------------------------------------------------------

def test_judge_shorter_n2_and_n4_within_call_budget() -> None:
    judge = CountingJudge("shorter")
    lab = judge_labeller(judge)
    rows = [prompt_row(0, "a b c", "a"), prompt_row(1, "one two", "one two three four", "one", "one two three")]
    result = label_rows(rows, "judge", lab)
    assert [(r["chosen"], r["rejected"]) for r in result.records] == [("a", "a b c"), ("one", "one two three four")]
    assert lab.counts == {"comparisons": 1 + 6, "no_verdict": 0}  # n=4: n(n-1)/2 = 6 comparisons
    assert judge.calls == 2 * 7                                     # each comparison asks both orders


def test_judge_ties_are_dropped() -> None:
    result = label_rows([prompt_row(0, "a b", "c d"), prompt_row(1, "x y", "z w", "q r")], "judge",
                        judge_labeller(build_judge("shorter")))
    assert result.summary["dropped"]["tie"] == 2 and not result.records


def test_no_verdict_is_counted_never_fatal() -> None:
    judge = NoVerdictJudge()
    lab = judge_labeller(judge)
    rows = [prompt_row(0, "a", "b c"), prompt_row(1, "a", "b c", "d e f", "g h i j")]
    result = label_rows(rows, "judge", lab)
    assert result.summary["dropped"]["no_verdict"] == 2 and result.summary["pairs"] == 0
    assert lab.counts == {"comparisons": 2, "no_verdict": 2}  # the round ends at the first missing verdict
    assert result.summary["judge_calls"] == {"comparisons": 2, "no_verdict": 2}


def test_agreement_rule_vs_judge() -> None:
    rows = [prompt_row(0, "a", "b c d"), prompt_row(1, "e f g", "h"), prompt_row(2, "i j", "k l m n o")]
    # the judge (longer) decides; the rule (shorter) always prefers the other one: agreement 0 of 3
    result = label_rows(rows, "judge", judge_labeller(build_judge("longer")),
                        compared=rule_labeller(parse_rule("shorter")))
    assert result.summary["agreement"] == {"with": "rule shorter", "agree": 0, "disagree": 3, "undecided": 0,
                                           "compared": 3, "share": 0.0}
    same = label_rows(rows, "judge", judge_labeller(build_judge("longer")),
                      compared=rule_labeller(parse_rule("words:3-9")))
    assert same.summary["agreement"]["agree"] == 3 and same.summary["agreement"]["share"] == 1.0


def test_run_label_closes_the_judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dpo_tui.worker.pairs_label as pl

    judge = NoVerdictJudge()
    monkeypatch.setattr(pl, "build_judge", lambda spec: judge)
    result, report = pl.run_label(write_folder(tmp_path / "p", ROWS), by="judge", judge_spec="shorter")
    assert judge.closed and result.summary["dropped"]["no_verdict"] == 3 and not report.ok


# -- the command --------------------------------------------------------------------------------------------

def test_cli_rule_writes_pairs_and_summary(tmp_path: Path) -> None:
    d = write_folder(tmp_path / "p", [*ROWS, ROWS[0]])
    proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "shorter")
    assert proc.returncode == 0, proc.stderr
    assert "4 pairs from 5 prompts" in proc.stdout and "near duplicate 1" in proc.stdout
    assert "duplicate prompt" not in proc.stdout  # same candidates, another prompt: not a duplicate prompt
    assert "warning" not in proc.stdout
    lines = [json.loads(x) for x in (d / "pairs.jsonl").read_text().splitlines()]
    assert lines[0] == {"prompt": "Question 0?\n", "chosen": "Paris.",
                        "rejected": "The capital of France is Paris, on the Seine."}
    summary = json.loads((d / "summary.json").read_text())
    assert summary["by"] == "rule" and summary["rule"] == "shorter" and summary["lint"]["ok"]


def test_cli_judge_and_rule_json_agreement(tmp_path: Path) -> None:
    d = write_folder(tmp_path / "p", ROWS, conversational=True)
    proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "longer", "--judge", "shorter", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["by"] == "judge" and summary["format"] == "conversational" and summary["pairs"] == 3
    assert summary["agreement"]["share"] == 0.0 and summary["agreement"]["compared"] == 3
    assert summary["judge_calls"] == {"comparisons": 3, "no_verdict": 0}
    first = json.loads((d / "pairs.jsonl").read_text().splitlines()[0])
    assert first["prompt"][0]["role"] == "system" and first["chosen"] == [{"role": "assistant", "content": "Paris."}]


def test_cli_by_hand_with_edits(tmp_path: Path) -> None:
    d = write_folder(tmp_path / "p", ROWS)
    labels = [{"index": 0, "decision": "b", "chosen": "c1", "rejected": "c0", "edited": {}, "t": 0.0},
              {"index": 1, "decision": "a", "chosen": "c0", "rejected": "c1", "edited": {"c0": "It is four."}, "t": 1.0},
              {"index": 3, "decision": "skip", "chosen": None, "rejected": None, "edited": {}, "t": 2.0}]
    (d / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    proc = run_cli_inprocess("pairs", "label", str(d), "--by", "hand", "--format", "conversational", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["pairs"] == 2 and summary["dropped"]["skipped"] == 1 and summary["dropped"]["not_labelled"] == 1
    rows = [json.loads(x) for x in (d / "pairs.jsonl").read_text().splitlines()]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "It is four."}]


def test_cli_lint_errors_exit_2_and_keep_the_file(tmp_path: Path) -> None:
    d = write_folder(tmp_path / "p", [["a b", "c d"]])
    proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "shorter")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "NOT USABLE" in proc.stdout and "tie 1" in proc.stdout and (d / "pairs.jsonl").exists()


@pytest.mark.parametrize(("case", "args", "expect"), [
    ("no-decider", [], "needs --rule, --judge or --by hand"),
    ("bad-rule", ["--rule", "shortest"], "Bad --rule value"),
    ("bad-regex", ["--rule", "must:("], "does not compile"),
    ("bad-judge", ["--judge", "cleverest"], "Bad --judge value"),
    ("by-rule-no-rule", ["--by", "rule", "--judge", "shorter"], "--by rule needs --rule"),
    ("by-judge-no-judge", ["--by", "judge", "--rule", "shorter"], "--by judge needs --judge"),
    ("hand-both", ["--by", "hand", "--rule", "shorter", "--judge", "longer"], "not both"),
    ("hand-no-labels", ["--by", "hand"], "no labels.jsonl"),
    ("bad-format", ["--rule", "shorter", "--format", "sharegpt"], "invalid choice"),
])
def test_cli_refusals(tmp_path: Path, case: str, args: list[str], expect: str) -> None:
    d = write_folder(tmp_path / "p", ROWS)
    proc = run_cli_inprocess("pairs", "label", str(d), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert not (d / "pairs.jsonl").exists()
    record_outcome(SUITE, f"pairs-label/{case}", "rejected", category="pairs")


@pytest.mark.parametrize("what", ["missing-folder", "no-candidates"])
def test_cli_refuses_a_folder_without_candidates(tmp_path: Path, what: str) -> None:
    d = tmp_path / "p"
    if what == "no-candidates":
        d.mkdir()
    proc = run_cli_inprocess("pairs", "label", str(d), "--judge", "shorter")
    assert proc.returncode == 2 and ("no such folder" if what == "missing-folder" else "no candidates.jsonl") in proc.stderr
    record_outcome(SUITE, f"pairs-label/{what}", "rejected", category="pairs")

