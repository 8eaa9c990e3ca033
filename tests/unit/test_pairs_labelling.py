"""Pair labelling, pure: rules, hand decisions, every drop counter, near-duplicates, output and its data check."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from dpo_tui.core.data import check_data
from dpo_tui.core.errors import UserError
from dpo_tui.core.pairs.labelling import (
    DROP_REASONS,
    NEAR_DUP_RATIO,
    Candidate,
    HandLabel,
    LabelResult,
    PromptRow,
    label_rows,
    near_duplicate,
    normalise,
    parse_rule,
    row_from,
    rule_decide,
    rule_labeller,
    write_output,
)
from tests.support.mounts import tmpfs


def cand(cid: str, text: str, finish: str = "eos") -> Candidate:
    return Candidate(cid, text, len(text.split()), finish)


def row(index: int, *texts: str, prompt: str | None = None, conversational: bool = False,
        finishes: dict[int, str] | None = None) -> PromptRow:
    p = prompt if prompt is not None else f"Question {index}?"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] if conversational else \
        [{"role": "user", "content": p}]
    cands = [cand(f"c{k}", t, (finishes or {}).get(k, "eos")) for k, t in enumerate(texts)]
    return PromptRow(index, p, messages, conversational, cands)


def ids(result: LabelResult) -> list[tuple[str, str]]:
    return [(r["chosen"], r["rejected"]) for r in result.records]


# -- rules ------------------------------------------------------------------------------------------------

FOUR = ["one two three", "one", "one two three four five six", "one two"]


@pytest.mark.parametrize(("spec", "chosen", "rejected"), [
    ("shorter", "one", "one two three four five six"),
    ("longer", "one two three four five six", "one"),
    ("words:2-3", "one two three", "one"),          # in-window beats out; first in file order among equals
    ("words:2-3+longer", "one two three", "one"),
    ("words:2-3+shorter", "one two", "one two three four five six"),
    ("must:three", "one two three", "one"),
    ("must-not:one two+shorter", "one", "one two three four five six"),
    ("must-not:one two+longer", "one", "one two"),
])
def test_rules_on_four_candidates(spec: str, chosen: str, rejected: str) -> None:
    d = rule_decide(parse_rule(spec), [cand(f"c{i}", t) for i, t in enumerate(FOUR)])
    assert d.outcome == "pair"
    assert (d.chosen.text, d.rejected.text) == (chosen, rejected)  # type: ignore[union-attr]


def test_must_not_blocks_choice_and_satisfying_beats_breaking() -> None:
    rule = parse_rule("must-not:(?i)great question+shorter")
    cands = [cand("c0", "Great question! Paris."), cand("c1", "It is Paris, the capital of France.")]
    d = rule_decide(rule, cands)
    assert d.outcome == "pair" and d.chosen.id == "c1" and d.rejected.id == "c0"  # type: ignore[union-attr]
    both_break = [cand("c0", "Great question! Paris."), cand("c1", "great question, it is Paris of France")]
    assert rule_decide(rule, both_break).outcome == "rule_unmet"
    assert rule_decide(parse_rule("must:Oslo"), [cand("c0", "Paris is big"), cand("c1", "Paris")]).outcome == "tie"


def test_rule_ties() -> None:
    assert rule_decide(parse_rule("shorter"), [cand("c0", "a b"), cand("c1", "c d")]).outcome == "tie"
    four_equal = [cand(f"c{i}", f"w{i} x") for i in range(4)]
    assert rule_decide(parse_rule("longer"), four_equal).outcome == "tie"
    assert rule_decide(parse_rule("words:1-5"), [cand("c0", "a"), cand("c1", "b c")]).outcome == "tie"


def test_regex_part_may_hold_a_plus() -> None:
    rule = parse_rule(r"must:\d+ km+shorter")
    assert [p.pattern for p in rule.must] == [r"\d+ km"] and rule.length == "shorter"


@pytest.mark.parametrize("spec", ["", "   ", "shortest", "shorter+longer", "must:", "must-not:(", "words:5",
                                  "words:9-3", "words:a-b", "words:1-2+words:3-4", "regex:x", "shorter+"])
def test_bad_rule_specs_are_user_errors(spec: str) -> None:
    with pytest.raises(UserError) as err:
        parse_rule(spec)
    assert err.value.problems[0].field == "--rule" and "shorter" in (err.value.hint or "")


# -- drops ------------------------------------------------------------------------------------------------

def test_every_drop_counter() -> None:
    rows = [
        row(0, "Paris.", "The capital of France is Paris, a city on the Seine."),                # pair
        row(1, "Paris.", "The capital is Paris, on the Seine.", prompt="Question 0?"),           # duplicate prompt
        row(2, "", "Something here"),                                                             # empty (0 words)
        row(3, "a b c", "d e f g", finishes={0: "cancelled"}),                                   # empty (cancelled)
        row(4, "alpha beta", "gamma delta"),                                                      # tie
        row(5, "Hello there, friend.", "hello  there friend"),                                   # near duplicate
        row(6, "Great question! x", "great question y z"),                                       # rule unmet
    ]
    result = label_rows(rows, "rule", rule_labeller(parse_rule("must-not:(?i)great question+shorter")))
    s = result.summary
    assert s["pairs"] == 1 and s["prompts"] == 7
    assert set(s["dropped"]) == set(DROP_REASONS)
    assert {k: v for k, v in s["dropped"].items() if v} == {
        "duplicate_prompt": 1, "empty": 2, "tie": 1, "near_duplicate": 1, "rule_unmet": 1}
    assert s["dropped_total"] == 6 and s["empty_candidates"] == 2
    assert ids(result) == [("Paris.", "The capital of France is Paris, a city on the Seine.")]


def test_n4_with_one_empty_candidate_uses_the_rest() -> None:
    r = row(0, "one two three", "", "one two three four five", "one", finishes={1: "cancelled"})
    result = label_rows([r], "rule", rule_labeller(parse_rule("longer")))
    assert ids(result) == [("one two three four five", "one")] and result.summary["empty_candidates"] == 1


def test_hand_decisions_and_edits() -> None:
    rows = [row(i, f"answer {i} short", f"answer {i} is a much longer one") for i in range(6)]
    hand = {
        0: HandLabel("a", "c0", "c1"),
        1: HandLabel("b", "c1", "c0", {"c1": "an edited, better answer"}),
        2: HandLabel("tie"),
        3: HandLabel("skip"),
        4: HandLabel("a", "c0", "c9"),                         # names a candidate that does not exist
    }                                                          # 5: not labelled yet
    result = label_rows(rows, "hand", None, hand=hand)
    assert ids(result) == [("answer 0 short", "answer 0 is a much longer one"),
                           ("an edited, better answer", "answer 1 short")]
    dropped = {k: v for k, v in result.summary["dropped"].items() if v}
    assert dropped == {"tie": 1, "skipped": 1, "bad_label": 1, "not_labelled": 1}
    assert result.summary["decided_by"] == "hand"


def test_hand_edit_to_empty_is_dropped_as_empty() -> None:
    result = label_rows([row(0, "yes", "no thanks")], "hand", None, hand={0: HandLabel("a", "c0", "c1", {"c0": "  "})})
    assert result.summary["dropped"]["empty"] == 1 and not result.records


def test_near_duplicate_threshold_both_sides() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank"
    close = base.replace("dog", "cat")
    far = "a completely different sentence about the weather in oslo today"
    r_close = difflib.SequenceMatcher(None, normalise(base), normalise(close), autojunk=False).ratio()
    r_far = difflib.SequenceMatcher(None, normalise(base), normalise(far), autojunk=False).ratio()
    assert r_close >= NEAR_DUP_RATIO > r_far
    assert near_duplicate(base, close) and not near_duplicate(base, far)
    assert near_duplicate(base, close, threshold=r_close) and not near_duplicate(base, close, threshold=r_close + 1e-9)
    assert near_duplicate("Yes!", "yes") and not near_duplicate("yes", "no")


def test_near_duplicate_for_n3_checks_chosen_against_rejected() -> None:
    r = row(0, "one two three four five six seven eight nine ten", "one two three four five six seven eight nine ten!",
            "eleven twelve")
    result = label_rows([r], "rule", rule_labeller(parse_rule("longer")))
    assert ids(result) == [("one two three four five six seven eight nine ten", "eleven twelve")]


# -- agreement --------------------------------------------------------------------------------------------

def test_agreement_between_decider_and_compared_rule() -> None:
    rows = [row(0, "a", "a b c"), row(1, "d e f", "g"), row(2, "h i", "j k l m"), row(3, "n o p", "q r s t u")]
    result = label_rows(rows, "rule", rule_labeller(parse_rule("shorter")),
                        compared=rule_labeller(parse_rule("must:[aeiou]")))
    # chosen per row: "a", "g", "h i", "n o p"; must:[aeiou] prefers a vowel answer over one without
    ag = result.summary["agreement"]
    assert ag["with"] == "rule must:[aeiou]"
    assert (ag["agree"], ag["disagree"], ag["undecided"]) == (1, 1, 2)
    assert ag["compared"] == 2 and ag["share"] == 0.5


# -- output -----------------------------------------------------------------------------------------------

def test_row_from_dict_and_object() -> None:
    line = {"index": 3, "line": 4, "prompt": "Hi?", "messages": [{"role": "user", "content": "Hi?"}],
            "conversational": False, "candidates": [{"id": "c0", "text": "Hello", "tokens": 2, "finish": "eos",
                                                     "seed": 1, "instruction": None}]}
    r = row_from(line)
    assert r.index == 3 and r.candidates == [Candidate("c0", "Hello", 2, "eos")]

    class Obj:
        index, prompt, conversational = 5, "Yo?", True
        messages = [{"role": "user", "content": "Yo?"}]
        candidates = [line["candidates"][0]]

    assert row_from(Obj()).conversational and row_from(Obj()).index == 5


def test_conversational_output_passes_the_data_check(tmp_path: Path) -> None:
    rows = [row(i, f"Short {i}.", f"A much longer answer number {i}, with detail.", conversational=True)
            for i in range(3)]
    result = label_rows(rows, "rule", rule_labeller(parse_rule("shorter")), fmt="conversational")
    report = write_output(tmp_path, result)
    assert report.ok and report.format == "conversational" and report.rows_usable == 3
    first = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert first["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert first["chosen"] == [{"role": "assistant", "content": "Short 0."}]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pairs"] == 3 and summary["lint"]["ok"] and summary["lint"]["errors"] == []


def test_standard_output_passes_the_data_check(tmp_path: Path) -> None:
    result = label_rows([row(0, "Paris.", "Paris is the capital of France.")], "rule",
                        rule_labeller(parse_rule("shorter")))
    report = write_output(tmp_path, result)
    assert report.ok and check_data(str(tmp_path / "pairs.jsonl")).shape == "standard-explicit"
    assert json.loads((tmp_path / "pairs.jsonl").read_text()) == {
        "prompt": "Question 0?\n", "chosen": "Paris.", "rejected": "Paris is the capital of France."}


def test_no_pairs_writes_an_empty_file_and_lint_says_so(tmp_path: Path) -> None:
    result = label_rows([row(0, "a b", "c d")], "rule", rule_labeller(parse_rule("shorter")))
    report = write_output(tmp_path, result)
    assert not report.ok and [f.code for f in report.errors] == ["empty"]
    assert (tmp_path / "pairs.jsonl").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["lint"]["ok"] is False


def _result(n: int) -> LabelResult:
    rows = [row(i, f"short {i}", f"a much longer answer {i} " + "word " * 40) for i in range(n)]
    return label_rows(rows, "rule", rule_labeller(parse_rule("shorter")))


def test_read_only_folder_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    import subprocess

    where = tmp_path / "ro"
    with tmpfs(where, "4m"):
        (where / "pairs.jsonl").write_text("old\n")
        proc = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot remount read-only: {proc.stderr.strip()}")
        with pytest.raises(UserError) as err:
            write_output(where, _result(3))
        assert "pairs.jsonl" in err.value.summary
        assert sorted(p.name for p in where.iterdir()) == ["pairs.jsonl"]
        assert (where / "pairs.jsonl").read_text() == "old\n"


def test_full_disk_leaves_no_half_file(tmp_path: Path) -> None:
    where = tmp_path / "full"
    with tmpfs(where, "64k"):
        with pytest.raises(UserError) as err:
            write_output(where, _result(2000))
        assert "disk full" in err.value.summary
        assert list(where.iterdir()) == []
