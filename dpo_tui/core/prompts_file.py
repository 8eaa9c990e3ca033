"""A file of prompts: what evaluation answers and pair making samples from.

Two forms, told apart by the file's suffix:

* ``.txt`` (or any other suffix): one prompt per line; blank lines and lines starting with ``#`` are skipped.
* ``.jsonl``: one JSON object per line with ``prompt`` (text, or a list of ``{role, content}`` messages
  ending with a user turn) or ``messages``; other fields (``chosen``, ``rejected``…) are ignored, so a
  preference file's prompts can be reused.

Every problem names the file and line; all of them are reported at once (up to :data:`MAX_PROBLEMS`), and a
file with any problem is refused as a whole, so a job never starts on half a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Problem, UserError, first_line
from .fsutil import JSON_ERRORS

MAX_LINE_CHARS = 32_000
"""Longer prompt lines are refused: they are almost always a file that is not a prompt list."""
MAX_PROBLEMS = 20
MAX_FILE_BYTES = 256 << 20
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PromptItem:
    line: int
    """1-based line in the file."""
    messages: tuple[tuple[str, str], ...]
    """(role, content) turns ending with a user turn."""

    @property
    def text(self) -> str:
        """The last user turn: what a table shows and what standard-form pairs store as ``prompt``."""
        return self.messages[-1][1]

    @property
    def conversational(self) -> bool:
        return len(self.messages) > 1

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


def _messages(value: object) -> tuple[tuple[tuple[str, str], ...] | None, str]:
    if isinstance(value, str):
        return ((("user", value),) if value.strip() else None), "is empty"
    if not isinstance(value, list) or not value:
        return None, "must be text or a non-empty list of {role, content} messages"
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            return None, f"message {i} must be {{\"role\": system|user|assistant, \"content\": text}}"
        out.append((str(m["role"]), str(m["content"])))
    if out[-1][0] != "user":
        return None, "the last message must be the user's"
    if not out[-1][1].strip():
        return None, "the last user message is empty"
    return tuple(out), ""


def read_input_file(path: Path, what: str, hint: str) -> bytes:
    """The bytes of a ``what`` file (``prompts``, ``facts``): a regular file of at most :data:`MAX_FILE_BYTES`
    (``core.runs.status.read_regular``: a FIFO or a device is refused before any read), or a UserError."""
    from .runs.status import read_regular

    name = str(path)
    try:
        raw = read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise UserError(f"No {what} file at {name}", hint=hint) from None
    except IsADirectoryError:
        raise UserError(f"No {what} file at {name}: it is a folder", hint=hint) from None
    except OSError as exc:
        raise UserError(f"Cannot read {what} file {name}: {exc.strerror or first_line(exc)}", hint=hint) from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB", hint=f"split it into smaller {what} files")
    return raw


def text_lines(raw: bytes, name: str, what: str, problems: list[Problem], comments: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line a ``what`` file may hold; bad UTF-8, NUL bytes and huge lines
    go to ``problems`` instead, and reading stops at :data:`MAX_PROBLEMS`. ``comments``: skip ``#`` lines too."""
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        if len(problems) >= MAX_PROBLEMS:
            return
        try:
            line = line_bytes.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            problems.append(Problem(f"not UTF-8 text (byte {exc.start + 1})", file=name, line=number,
                                    hint="re-save the file as UTF-8"))
            continue
        if not line.strip() or (comments and line.lstrip().startswith("#")):
            continue
        if "\x00" in line:
            problems.append(Problem("contains a NUL byte; this is not a text file", file=name, line=number))
            continue
        if len(line) > MAX_LINE_CHARS:
            problems.append(Problem(f"{len(line):,} characters; a {what} line may have at most {MAX_LINE_CHARS:,}",
                                    file=name, line=number, hint=f"is this really a {what} file?"))
            continue
        yield number, line


NOT_JSON = object()
"""What :func:`json_line` returns for a line that is not JSON (its problem is recorded)."""


def json_line(line: str, number: int, name: str, problems: list[Problem]) -> Any:
    """The line's JSON value, or :data:`NOT_JSON` with the reason added to ``problems``."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"not valid JSON ({exc.msg} at column {exc.colno})", file=name, line=number))
    except JSON_ERRORS:
        problems.append(Problem("not valid JSON (nested too deeply)", file=name, line=number))
    return NOT_JSON


def refuse_problems(name: str, problems: list[Problem]) -> None:
    """Refuse the whole file when any line was bad (a job never starts on half a file)."""
    if problems:
        more = " (first problems shown)" if len(problems) >= MAX_PROBLEMS else ""
        raise UserError(f"{name} has {len(problems)} bad line{'s' if len(problems) != 1 else ''}{more}", problems,
                        hint="fix or delete those lines; nothing was started")


def read_prompts(path: Path | str) -> list[PromptItem]:
    """Every prompt of the file, in order; a :class:`UserError` lists each bad line (file, line, fix)."""
    path = Path(path).expanduser()
    name = str(path)
    raw = read_input_file(path, "prompts", "give a .txt file (one prompt a line) or a .jsonl file")
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    items: list[PromptItem] = []
    problems: list[Problem] = []
    for number, line in text_lines(raw, name, "prompt", problems, comments=not jsonl):
        if not jsonl:
            items.append(PromptItem(number, (("user", line.strip()),)))
            continue
        obj = json_line(line, number, name, problems)
        if obj is NOT_JSON:
            continue
        if not isinstance(obj, dict):
            problems.append(Problem("must be a JSON object with a prompt field", file=name, line=number))
            continue
        key = "prompt" if "prompt" in obj else "messages" if "messages" in obj else None
        if key is None:
            problems.append(Problem("has no prompt field", file=name, line=number,
                                    hint='write {"prompt": "..."} or {"messages": [...]}'))
            continue
        messages, why = _messages(obj[key])
        if messages is None:
            problems.append(Problem(why, file=name, line=number, field=key))
            continue
        items.append(PromptItem(number, messages))
    refuse_problems(name, problems)
    if not items:
        raise UserError(f"{name} has no prompts", hint="one prompt per line (.txt) or {\"prompt\": ...} per line (.jsonl)")
    return items
