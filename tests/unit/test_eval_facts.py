"""Facts files: matching rules, and refusals that name each bad line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.eval.facts import Fact, fact_ok, read_facts


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fact_ok_contains_regex_exact():
    assert fact_ok("The capital of Norway is  OSLO.", "oslo")
    assert fact_ok("It is New\n  Delhi, of course", "new delhi")
    assert not fact_ok("The capital is Bergen.", "Oslo")
    assert fact_ok("The symbol is Sn.", r"\bsn\b", "regex")
    assert not fact_ok("Snow is cold.", r"\bSn\b", "regex")
    assert not fact_ok("anything", "(", "regex")
    assert fact_ok("  Oslo \n", "oslo", "exact")
    assert not fact_ok("Oslo.", "Oslo", "exact")
    with pytest.raises(ValueError):
        fact_ok("Oslo", "Oslo", "fuzzy")


def test_read_facts_reads_defaults_and_skips_blank_lines(tmp_path):
    path = _write(tmp_path / "facts.jsonl", [
        json.dumps({"prompt": "What is the capital of Norway?", "expected": "Oslo"}),
        "",
        json.dumps({"prompt": " Symbol for tin? ", "expected": r"\bSn\b", "match": "regex", "note": "ignored"}),
        json.dumps({"prompt": "Say yes.", "expected": "yes", "match": "exact"}),
    ])
    assert read_facts(path) == [
        Fact(1, "What is the capital of Norway?", "Oslo", "contains"),
        Fact(3, "Symbol for tin?", r"\bSn\b", "regex"),
        Fact(4, "Say yes.", "yes", "exact"),
    ]


def test_read_facts_lists_every_bad_line(tmp_path):
    path = tmp_path / "facts.jsonl"
    good = json.dumps({"prompt": "Q?", "expected": "A"})
    path.write_bytes("\n".join([
        good,
        '{"prompt": "Q?"',                                           # 2 bad JSON
        json.dumps({"expected": "A"}),                                # 3 no prompt
        json.dumps({"prompt": "Q?", "expected": "  "}),               # 4 empty expected
        json.dumps({"prompt": "Q?", "expected": "(", "match": "regex"}),  # 5 bad regex
        json.dumps({"prompt": "Q?", "expected": "A", "match": "fuzzy"}),  # 6 unknown match
        json.dumps(["Q?", "A"]),                                      # 7 not an object
        good,
    ]).encode() + b"\n\xff\xfe bad bytes\n")                         # 9 not UTF-8
    with pytest.raises(UserError) as info:
        read_facts(path)
    err = info.value
    assert "7 bad lines" in err.summary
    assert [p.line for p in err.problems] == [2, 3, 4, 5, 6, 7, 9]
    assert all(p.file == str(path) for p in err.problems)
    fields = {p.line: p.field for p in err.problems}
    assert fields[3] == "prompt" and fields[4] == "expected" and fields[5] == "expected" and fields[6] == "match"
    text = err.render()
    assert f"{path}:5: expected: the pattern does not compile" in text
    assert "not UTF-8" in text and "not valid JSON" in text


def test_read_facts_refuses_empty_and_missing_files(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(UserError, match="has no facts"):
        read_facts(empty)
    with pytest.raises(UserError, match="No facts file"):
        read_facts(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="No facts file"):
        read_facts(tmp_path)
