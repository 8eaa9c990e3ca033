"""A facts file: questions with a known answer, asked of base and tuned to see what tuning made the model forget.

One JSON object per line (blank lines are skipped)::

    {"prompt": "What is the capital of Norway?", "expected": "Oslo"}
    {"prompt": "Chemical symbol for tin?", "expected": "\\\\bSn\\\\b", "match": "regex"}

``match`` says how an answer is checked against ``expected`` (always case-insensitive):

* ``contains`` (default): ``expected`` occurs in the answer, runs of whitespace counting as one space;
* ``regex``: the pattern is found anywhere in the answer (:func:`re.search`);
* ``exact``: the answer, stripped, is ``expected``.

Like :func:`dpo_tui.core.prompts_file.read_prompts`, every bad line is reported at once (file:line), and a file
with any problem is refused as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from ..errors import Problem, UserError
from ..prompts_file import NOT_JSON, json_line, read_input_file, refuse_problems, text_lines

Match = Literal["contains", "regex", "exact"]
MATCHES: tuple[Match, ...] = ("contains", "regex", "exact")
EXAMPLE = '{"prompt": "What is the capital of Norway?", "expected": "Oslo"}'


@dataclass(frozen=True)
class Fact:
    line: int
    """1-based line in the file."""
    prompt: str
    expected: str
    match: Match = "contains"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def fact_ok(answer: str, expected: str, match: str = "contains") -> bool:
    """Whether ``answer`` gives ``expected`` under ``match`` (see the module docstring); a regex that does
    not compile never matches (:func:`read_facts` refuses such a file before anything runs)."""
    if match == "contains":
        return _norm(expected) in _norm(answer)
    if match == "regex":
        try:
            return re.search(expected, answer, re.IGNORECASE) is not None
        except re.error:
            return False
    if match == "exact":
        return answer.strip().casefold() == expected.strip().casefold()
    raise ValueError(f"unknown match {match!r}; expected one of {', '.join(MATCHES)}")


def _fact(obj: object, number: int, name: str) -> Fact | Problem:
    def bad(message: str, field: str | None = None, hint: str | None = None) -> Problem:
        return Problem(message, field=field, file=name, line=number, hint=hint)

    if not isinstance(obj, dict):
        return bad("must be a JSON object", hint=f"write {EXAMPLE}")
    for key in ("prompt", "expected"):
        if key not in obj:
            return bad(f"has no {key} field", field=key, hint=f"write {EXAMPLE}")
        if not isinstance(obj[key], str) or not obj[key].strip():
            return bad("must be non-empty text", field=key)
    match = obj.get("match", "contains")
    if match not in MATCHES:
        return bad(f"{match!r} is not a match kind", field="match", hint=f"use {', '.join(MATCHES)}")
    if match == "regex":
        try:
            re.compile(obj["expected"], re.IGNORECASE)
        except re.error as exc:
            return bad(f"the pattern does not compile: {exc}", field="expected", hint="check the regular expression")
    return Fact(number, obj["prompt"].strip(), obj["expected"], cast(Match, match))


def read_facts(path: Path | str) -> list[Fact]:
    """Every fact of the file, in order; a :class:`UserError` lists each bad line (file, line, fix)."""
    path = Path(path).expanduser()
    name = str(path)
    raw = read_input_file(path, "facts", f"give a .jsonl file with one {EXAMPLE} per line")
    facts: list[Fact] = []
    problems: list[Problem] = []
    for number, line in text_lines(raw, name, "fact", problems):
        obj = json_line(line, number, name, problems)
        if obj is NOT_JSON:
            continue
        found = _fact(obj, number, name)
        if isinstance(found, Problem):
            problems.append(found)
        else:
            facts.append(found)
    refuse_problems(name, problems)
    if not facts:
        raise UserError(f"{name} has no facts", hint=f"one {EXAMPLE} per line")
    return facts
