"""The hand-labelling queue over labels.jsonl: replay, undo (also after a restart), torn lines, the n > 2 pick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.pairs.queue import (
    Candidate,
    HandDecision,
    LabelQueue,
    pick_pair,
    read_hand_labels,
    read_queue_rows,
)


def write_candidates(folder: Path, rows: list[list[str]], prompt: str = "question {i}?") -> Path:
    """A candidates.jsonl in the documented format: one line per prompt with these candidate texts."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "candidates.jsonl", "w", encoding="utf-8") as fh:
        for i, texts in enumerate(rows):
            line = {
                "index": i, "line": i + 1, "prompt": prompt.format(i=i),
                "messages": [{"role": "user", "content": prompt.format(i=i)}], "conversational": False,
                "candidates": [{"id": f"c{k}", "text": t, "tokens": len(t.split()), "finish": "eos", "seed": 1000 + k,
                                "instruction": None} for k, t in enumerate(texts)],
                "provenance": {"model": "sample", "adapter": None, "temperature": 0.8},
            }
            fh.write(json.dumps(line) + "\n")
    return folder


def label_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_candidates(tmp_path / "pairs", [["short one", "a much longer answer here"]] * 4)


def test_decide_appends_one_line_per_key_and_moves_on(folder: Path) -> None:
    queue = LabelQueue(folder)
    assert queue.current().index == 0 and queue.progress() == (0, 0, 4)
    assert queue.decide("a") == HandDecision(0, "a", "c0", "c1", {})
    assert [line["decision"] for line in label_lines(folder)] == ["a"]
    queue.decide("b")
    queue.decide("tie")
    queue.decide("skip")
    lines = label_lines(folder)
    assert [(line["index"], line["decision"], line["chosen"], line["rejected"]) for line in lines] == [
        (0, "a", "c0", "c1"), (1, "b", "c1", "c0"), (2, "tie", None, None), (3, "skip", None, None)]
    assert all(isinstance(line["t"], float) for line in lines)
    assert queue.current() is None
    assert queue.progress() == (3, 1, 4)


def test_undo_reverts_the_latest_decision_and_survives_a_restart(folder: Path) -> None:
    queue = LabelQueue(folder)
    queue.decide("a")
    queue.decide("b")
    assert queue.undo() == 1
    assert queue.current().index == 1
    assert label_lines(folder)[-1]["decision"] == "undo"
    reopened = LabelQueue(folder)
    assert reopened.current().index == 1 and reopened.progress() == (1, 0, 4)
    assert reopened.undo() == 0  # the undo stack is replayed too: the next undo reaches the first decision
    assert read_hand_labels(folder) == {}
    assert LabelQueue(folder).undo() is None


def test_last_decision_per_index_wins_and_undo_restores_the_one_before(tmp_path: Path) -> None:
    folder = write_candidates(tmp_path / "p", [["x", "y y"]])
    lines = [{"index": 0, "decision": "a", "chosen": "c0", "rejected": "c1", "edited": {}, "t": 1.0},
             {"index": 0, "decision": "b", "chosen": "c1", "rejected": "c0", "edited": {}, "t": 2.0}]
    (folder / "labels.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_hand_labels(folder)[0].decision == "b"
    LabelQueue(folder).undo()
    assert read_hand_labels(folder)[0].decision == "a"


def test_a_torn_last_line_is_ignored_and_the_next_decision_starts_a_fresh_line(folder: Path) -> None:
    queue = LabelQueue(folder)
    queue.decide("a")
    with open(folder / "labels.jsonl", "a") as fh:
        fh.write('{"index": 1, "decision": "b", "cho')  # the console died mid-write
    assert set(read_hand_labels(folder)) == {0}
    reopened = LabelQueue(folder)
    assert reopened.current().index == 1
    reopened.decide("tie")
    assert read_hand_labels(folder)[1].decision == "tie"
    assert (folder / "labels.jsonl").read_text().count("\n") == 3  # a, the torn fragment on its own line, tie


def test_edit_applies_to_the_shown_side_and_is_recorded_with_the_decision(folder: Path) -> None:
    queue = LabelQueue(folder)
    queue.edit("b", "an edited answer")
    assert queue.current().b.text == "an edited answer"
    decision = queue.decide("b")
    assert decision.edited == {"c1": "an edited answer"}
    assert label_lines(folder)[-1]["edited"] == {"c1": "an edited answer"}
    assert LabelQueue(folder).decisions[0].edited == {"c1": "an edited answer"}
    assert queue.current().b.text == "a much longer answer here"  # the next prompt is untouched


def test_pick_pair_for_more_than_two_is_the_widest_word_gap_among_non_empty() -> None:
    cands = tuple(Candidate(f"c{k}", t) for k, t in enumerate(["one two three", "", "a b c d e f g h", "x", "p q"]))
    a, b = pick_pair(cands)
    assert (a.id, b.id) == ("c2", "c3")  # 8 words vs 1; the empty c1 is never picked
    two = (Candidate("c0", ""), Candidate("c1", "y"))
    assert [c.id for c in pick_pair(two)] == ["c0", "c1"]  # n = 2: as they are, even an empty side
    lone = (Candidate("c0", "a b"), Candidate("c1", ""), Candidate("c2", ""))
    assert [c.id for c in pick_pair(lone)] == ["c0", "c1"]


def test_queue_uses_the_n_gt_2_pick_and_records_those_ids(tmp_path: Path) -> None:
    folder = write_candidates(tmp_path / "p", [["mid length text", "tiny", "a very very long answer indeed with words"]])
    queue = LabelQueue(folder)
    item = queue.current()
    assert (item.a.id, item.b.id) == ("c1", "c2")
    assert queue.decide("a") == HandDecision(0, "a", "c1", "c2", {})


def test_damaged_candidate_lines_are_skipped(tmp_path: Path) -> None:
    folder = write_candidates(tmp_path / "p", [["a", "b"], ["c", "d"]])
    with open(folder / "candidates.jsonl", "a") as fh:
        fh.write('not json\n{"index": "x", "candidates": []}\n{"index": 5, "candi')
    assert [row.index for row in read_queue_rows(folder)] == [0, 1]
    assert read_queue_rows(tmp_path / "missing") == []


def test_bad_decisions_are_refused(folder: Path) -> None:
    queue = LabelQueue(folder)
    with pytest.raises(ValueError):
        queue.decide("c")
    with pytest.raises(ValueError):
        queue.edit("c", "x")
    assert not (folder / "labels.jsonl").exists()
