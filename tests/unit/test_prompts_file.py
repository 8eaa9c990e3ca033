"""The prompts file shared by evaluation and pair making: both forms, and every refusal with its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.prompts_file import MAX_LINE_CHARS, read_prompts


def test_text_file_skips_blank_and_comment_lines(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("# held-out prompts\nWhat is 2+2?\n\n   \r\nName a colour.\r\n", encoding="utf-8")
    items = read_prompts(f)
    assert [(i.line, i.text) for i in items] == [(2, "What is 2+2?"), (5, "Name a colour.")]
    assert not items[0].conversational
    assert items[0].as_messages() == [{"role": "user", "content": "What is 2+2?"}]


def test_jsonl_reads_text_messages_and_preference_rows(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "Plain?"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]},
        {"prompt": [{"role": "user", "content": "Conv?"}], "chosen": "x", "rejected": "y"},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    items = read_prompts(f)
    assert [i.text for i in items] == ["Plain?", "Why?", "Conv?"]
    assert items[1].conversational and items[1].messages[0] == ("system", "Be brief.")


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    lines = [
        b'{"prompt": "fine"}',
        b'{"prompt": ',  # 2: bad JSON
        b'["not", "an object"]',  # 3
        b'{"question": "no prompt field"}',  # 4
        b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',  # 5: ends with assistant
        b'{"prompt": "caf\xe9"}',  # 6: Latin-1, not UTF-8
        b'{"prompt": "' + b"x" * (MAX_LINE_CHARS + 10) + b'"}',  # 7: huge
        b'{"prompt": "   "}',  # 8: empty
    ]
    f.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError) as info:
        read_prompts(f)
    text = info.value.render()
    for line in (2, 3, 4, 5, 6, 7, 8):
        assert f"{f}:{line}:" in text or f"{f}:{line}" in text, (line, text)
    assert f"{f}:1" not in text
    assert "not UTF-8" in text and "at most" in text and "last message must be the user's" in text


def test_text_file_with_nul_and_bad_utf8(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_bytes(b"good prompt\nbad \xff byte\nnul\x00here\n")
    with pytest.raises(UserError) as info:
        read_prompts(f)
    text = info.value.render()
    assert ":2:" in text and "UTF-8" in text and ":3:" in text and "NUL" in text


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="No prompts file"):
        read_prompts(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="No prompts file"):
        read_prompts(tmp_path)
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n# only a comment\n")
    with pytest.raises(UserError, match="has no prompts"):
        read_prompts(empty)


def test_the_sample_heldout_prompts_read() -> None:
    from dpo_tui.core.paths import sample_heldout_prompts_path

    items = read_prompts(sample_heldout_prompts_path())
    assert len(items) == 54 and all(i.text.endswith("?") or i.text for i in items)
