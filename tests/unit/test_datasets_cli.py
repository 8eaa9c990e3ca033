"""``dpo-tui data check|convert``: exit codes, text and JSON forms, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.cli import main
from dpo_tui.cli.data import parse_map
from dpo_tui.core.errors import UserError


def rows_file(tmp_path: Path, *rows, name="d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


GOOD = {"prompt": "Q?\n", "chosen": "Yes.", "rejected": "No."}
GOOD2 = {"prompt": "R?\n", "chosen": "Sure.", "rejected": "Nope."}


def test_check_usable_exits_0(tmp_path, capsys):
    p = rows_file(tmp_path, GOOD, GOOD2)
    assert main(["data", "check", str(p)]) == 0
    out = capsys.readouterr().out
    assert "standard-explicit" in out and "2 usable of 2 rows" in out and "OK: usable" in out


def test_check_with_warnings_exits_0(tmp_path, capsys):
    p = rows_file(tmp_path, GOOD, GOOD)
    assert main(["data", "check", str(p)]) == 0
    assert f"{p}:2: duplicate pair" in capsys.readouterr().out


def test_check_errors_exit_2_and_name_file_line_field(tmp_path, capsys):
    p = rows_file(tmp_path, GOOD, {"prompt": "Q?\n", "chosen": None, "rejected": "x"})
    assert main(["data", "check", str(p)]) == 2
    out = capsys.readouterr().out
    assert f"error: {p}:2: chosen: 'chosen' is null (null-field)" in out
    assert "NOT USABLE" in out


def test_check_json_is_one_object(tmp_path, capsys):
    p = rows_file(tmp_path, GOOD, {"prompt": "Q?\n", "chosen": "", "rejected": "x"}, GOOD2)
    assert main(["data", "check", str(p), "--json"]) == 2
    out = capsys.readouterr().out
    data = json.loads(out)
    assert out.count("\n") == 1
    assert data["format"] == "standard" and data["rows"] == 2
    (err,) = data["errors"]
    assert err["line"] == 2 and err["field"] == "chosen" and err["message"] == "chosen is empty"
    assert data["warnings"] == [] and "chars" in data["stats"]


def test_check_map_resolves_ambiguity(tmp_path, capsys):
    p = rows_file(tmp_path, {"question": "Q?\n", "instruction": "x", "chosen": "a", "rejected": "b"})
    assert main(["data", "check", str(p)]) == 2
    assert "--map prompt=" in capsys.readouterr().out
    assert main(["data", "check", str(p), "--map", "prompt=question", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 1


def test_missing_source_exits_2_without_traceback(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "dataset not found" in err and "Traceback" not in err


def test_convert_writes_normalized_rows(tmp_path, capsys):
    hh = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}
    p = rows_file(tmp_path, hh)
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(p), str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{
        "prompt": [{"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }]
    assert "wrote 1 conversational rows (hh-rlhf)" in capsys.readouterr().out
    # converting the converted file is the identity
    out2 = tmp_path / "out2.jsonl"
    assert main(["data", "convert", str(out), str(out2)]) == 0
    assert out2.read_text() == out.read_text()
    # never overwrites by accident
    assert main(["data", "convert", str(p), str(out)]) == 2


def test_convert_refuses_errors_unless_drop_bad(tmp_path, capsys):
    p = rows_file(tmp_path, GOOD, {"prompt": "Q?\n", "chosen": "same", "rejected": "same"})
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(p), str(out)]) == 2
    assert not out.exists()
    assert main(["data", "convert", str(p), str(out), "--drop-bad"]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == [GOOD]


@pytest.mark.parametrize("items,expected", [
    (["prompt=question"], {"prompt": "question"}),
    (["prompt=question", "system=sys"], {"prompt": "question", "system": "sys"}),
    (["prompt=q,chosen=good"], {"prompt": "q", "chosen": "good"}),
])
def test_parse_map(items, expected):
    assert parse_map(items) == expected


def test_parse_map_rejects_garbage():
    with pytest.raises(UserError, match="bad --map"):
        parse_map(["prompt"])
