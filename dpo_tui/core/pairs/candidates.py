"""``candidates.jsonl``: one line per prompt, appended by the generate worker, read by labelling and the console.

One line::

    {"index": 0, "line": 1, "prompt": "What is ...?", "messages": [{"role": "user", "content": "..."}],
     "conversational": false,
     "candidates": [{"id": "c0", "text": "...", "tokens": 12, "finish": "eos", "seed": 1234,
                     "instruction": "Answer in one sentence."}],
     "provenance": {"model": "...", "adapter": "RUN_ID or null", "adapter_path": "...", "temperature": 0.8,
                    "top_p": 0.95, "max_new_tokens": 128, "system": "...", "created_at": 0.0, "dpo_tui": "0.x"}}

``index`` is the prompt's position in the prompts file (blank and comment lines not counted), ``line`` its
1-based line. The worker appends whole lines and fsyncs after each chunk, so a crash can leave at most one
torn last line; readers skip it (and any other damaged line) and count it, and the worker truncates it
away before it appends again (:func:`truncate_torn_tail`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import JSON_ERRORS

CANDIDATES_FILE = "candidates.jsonl"


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str
    tokens: int = 0
    finish: str = ""
    """``eos``, ``stop`` or ``length`` (cut at max_new_tokens: a truncated answer)."""
    seed: int = 0
    instruction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "tokens": self.tokens, "finish": self.finish, "seed": self.seed,
                "instruction": self.instruction}


@dataclass(frozen=True)
class CandidateRow:
    index: int
    line: int
    prompt: str
    messages: list[dict[str, str]]
    conversational: bool
    candidates: list[Candidate]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "line": self.line, "prompt": self.prompt, "messages": self.messages,
                "conversational": self.conversational, "candidates": [c.to_dict() for c in self.candidates],
                "provenance": self.provenance}

    def to_line(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"


@dataclass
class CandidatesScan:
    """What a read found: the good rows (first of each index), and how many lines were skipped and why."""

    rows: list[CandidateRow] = field(default_factory=list)
    skipped: int = 0
    """Damaged lines (not JSON, wrong shape) and repeated indices; a torn last line counts here too."""
    torn_tail: bool = False
    """The file ends without a newline: a write cut short (the worker truncates it before appending)."""
    problems: list[str] = field(default_factory=list)
    """``line N: why`` for the first few skipped lines."""

    @property
    def indices(self) -> set[int]:
        return {row.index for row in self.rows}


def _row(obj: Any) -> CandidateRow:
    """A row from one parsed line; ValueError/TypeError/KeyError when its shape is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    index, line = obj["index"], obj.get("line", 0)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError("index must be a non-negative integer")
    messages = obj["messages"]
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages):
        raise ValueError("messages must be a list of {role, content}")
    cands = obj["candidates"]
    if not isinstance(cands, list) or not cands:
        raise ValueError("candidates must be a non-empty list")
    out = []
    for c in cands:
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(c.get("text"), str):
            raise ValueError("each candidate needs a string id and text")
        instruction = c.get("instruction")
        out.append(Candidate(c["id"], c["text"], int(c.get("tokens") or 0), str(c.get("finish") or ""),
                             int(c.get("seed") or 0), instruction if isinstance(instruction, str) else None))
    provenance = obj.get("provenance")
    return CandidateRow(index, int(line or 0), str(obj.get("prompt", "")), [dict(m) for m in messages],
                        bool(obj.get("conversational", False)), out, provenance if isinstance(provenance, dict) else {})


def scan_candidates(job_dir: Path | str) -> CandidatesScan:
    """Every readable row of ``DIR/candidates.jsonl`` in file order; never raises for a damaged line.

    A missing file reads as no rows. The first row of an index wins (the worker never writes one twice;
    a repeat would be a hand edit), later ones are counted as skipped.
    """
    scan = CandidatesScan()
    try:
        raw = (Path(job_dir) / CANDIDATES_FILE).read_bytes()
    except OSError:
        return scan
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        scan.torn_tail = True
    seen: set[int] = set()
    for number, data in enumerate(lines, start=1):
        if not data.strip():
            continue
        try:
            row = _row(json.loads(data.decode("utf-8")))
        # OverflowError: an infinite count (JSON ``Infinity``, ``1e400``) fed to int(); a damaged line, never a
        # crash of the reader.
        except (TypeError, KeyError, OverflowError, *JSON_ERRORS) as exc:
            scan.skipped += 1
            if len(scan.problems) < 5:
                scan.problems.append(f"line {number}: {exc if not isinstance(exc, KeyError) else f'no {exc} field'}")
            continue
        if row.index in seen:
            scan.skipped += 1
            if len(scan.problems) < 5:
                scan.problems.append(f"line {number}: prompt {row.index} again (the first one is kept)")
            continue
        seen.add(row.index)
        scan.rows.append(row)
    return scan


def read_candidates(job_dir: Path | str) -> list[CandidateRow]:
    """The readable rows (see :func:`scan_candidates` for the skipped count)."""
    return scan_candidates(job_dir).rows


def count_lines(job_dir: Path | str) -> int:
    """Complete lines in candidates.jsonl, without parsing them (cheap enough for a status poll)."""
    try:
        with open(Path(job_dir) / CANDIDATES_FILE, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def truncate_torn_tail(job_dir: Path | str) -> int:
    """Cut a last line that has no newline (a write cut short by a crash); returns the bytes removed.

    Only the worker calls this, before it appends: appending after a torn line would glue the next row
    onto it and lose both.
    """
    path = Path(job_dir) / CANDIDATES_FILE
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            pos = size
            keep = 0
            while pos > 0:
                step = min(1 << 16, pos)
                pos -= step
                fh.seek(pos)
                block = fh.read(step)
                at = block.rfind(b"\n")
                if at >= 0:
                    keep = pos + at + 1
                    break
            if keep == size:
                return 0
            fh.truncate(keep)
            fh.flush()
            with contextlib.suppress(OSError):
                os.fsync(fh.fileno())
            return size - keep
    except FileNotFoundError:
        return 0
