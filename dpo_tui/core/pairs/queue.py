"""The hand-labelling queue: which prompt comes next, and every A/B decision kept on disk.

A pairs folder (``DIR/``) holds ``candidates.jsonl`` (one line per prompt, from the generate job) and
``labels.jsonl``, the operator's decisions, one JSON line per key::

    {"index": 0, "decision": "a"|"b"|"tie"|"skip"|"undo", "chosen": "c0", "rejected": "c1",
     "edited": {"c0": "edited text"}, "t": 0.0}

``labels.jsonl`` is only ever appended to (flushed and fsynced before the screen moves on), so a
dropped SSH session or a killed console loses at most the key being pressed. Replaying it
(:func:`read_hand_labels`): the last decision for an index wins; an ``undo`` line reverts the most
recent decision not yet undone (its own ``index`` is informative only); a line that does not parse is
skipped — in practice only a torn last line, and :meth:`LabelQueue.decide` starts a fresh line after
one so the next decision is never glued onto it. ``chosen``/``rejected`` are candidate ids for ``a``
and ``b``, null for ``tie`` and ``skip``.

Which two candidates are shown: with two, the first is A and the second is B (with
``--instruction-a/-b`` that is the A-instruction's answer on the left). With more than two, the pair
of non-empty candidates whose word counts differ the most (the clearest contrast for a person to
judge), earlier candidate as A; ties between pairs go to the earliest pair. Fewer than two non-empty
candidates: the first two as they are.

Pure: stdlib only.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import JSON_ERRORS

CANDIDATES_FILE = "candidates.jsonl"
LABELS_FILE = "labels.jsonl"
DECISIONS = ("a", "b", "tie", "skip")


@dataclass(frozen=True)
class HandDecision:
    """One prompt's standing decision (``decision`` in :data:`DECISIONS`)."""

    index: int
    decision: str
    chosen: str | None = None
    rejected: str | None = None
    edited: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class QueueRow:
    """What the queue needs of one ``candidates.jsonl`` line."""

    index: int
    prompt: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class QueueItem:
    """The prompt on screen and its two sides (texts with any pending edit applied)."""

    index: int
    prompt: str
    a: Candidate
    b: Candidate
    position: int
    """0-based place of this prompt in the queue's order."""


def _prompt_text(obj: dict[str, Any]) -> str:
    prompt = obj.get("prompt")
    if isinstance(prompt, str):
        return prompt
    messages = prompt if isinstance(prompt, list) else obj.get("messages")
    if isinstance(messages, list):
        turns = [m for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]
        users = [m["content"] for m in turns if m.get("role") == "user"]
        if users:
            return str(users[-1])
        if turns:
            return str(turns[-1]["content"])
    return ""


def read_queue_rows(pairs_dir: Path) -> list[QueueRow]:
    """The prompts of ``candidates.jsonl`` with their candidates, by index (first line per index wins).

    Tolerant like the generate job's reader (``core/pairs/candidates.py``, which may replace this):
    a line that does not parse or lacks an index or candidates is skipped, never raised.
    """
    try:
        raw = (Path(pairs_dir) / CANDIDATES_FILE).read_bytes()
    except OSError:
        return []
    rows: dict[int, QueueRow] = {}
    for line in raw.split(b"\n"):
        try:
            obj = json.loads(line)
        except JSON_ERRORS:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("index"), int) or obj["index"] in rows:
            continue
        found = obj.get("candidates")
        if not isinstance(found, list):
            continue
        candidates = tuple(
            Candidate(str(c.get("id") or f"c{k}"), c["text"] if isinstance(c.get("text"), str) else "")
            for k, c in enumerate(found) if isinstance(c, dict)
        )
        if candidates:
            rows[obj["index"]] = QueueRow(obj["index"], _prompt_text(obj), candidates)
    return [rows[i] for i in sorted(rows)]


def pick_pair(candidates: tuple[Candidate, ...]) -> tuple[Candidate, Candidate]:
    """The two candidates to compare (see the module docstring); a lone candidate is shown on both sides."""
    if len(candidates) < 2:
        return candidates[0], candidates[0]
    if len(candidates) == 2:
        return candidates[0], candidates[1]
    full = [c for c in candidates if c.words > 0]
    if len(full) < 2:
        return candidates[0], candidates[1]
    best = (full[0], full[1])
    widest = -1
    for i, first in enumerate(full):
        for second in full[i + 1:]:
            gap = abs(first.words - second.words)
            if gap > widest:
                best, widest = (first, second), gap
    return best


def _parse_decision(obj: Any) -> tuple[str, HandDecision | None] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("index"), int):
        return None
    decision = obj.get("decision")
    if decision == "undo":
        return "undo", None
    if decision not in DECISIONS:
        return None
    edited = obj.get("edited")
    edits = {str(k): v for k, v in edited.items() if isinstance(v, str)} if isinstance(edited, dict) else {}
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    return "set", HandDecision(obj["index"], decision, chosen if isinstance(chosen, str) else None,
                               rejected if isinstance(rejected, str) else None, edits)


def _replay(pairs_dir: Path) -> tuple[dict[int, HandDecision], list[tuple[int, HandDecision | None]]]:
    """(standing decisions, the undo stack: (index, the decision it replaced) per decision not undone)."""
    try:
        raw = (Path(pairs_dir) / LABELS_FILE).read_bytes()
    except OSError:
        return {}, []
    standing: dict[int, HandDecision] = {}
    stack: list[tuple[int, HandDecision | None]] = []
    for line in raw.split(b"\n"):
        try:
            parsed = _parse_decision(json.loads(line))
        except JSON_ERRORS:
            continue
        if parsed is None:
            continue
        kind, decision = parsed
        if kind == "undo":
            if stack:
                index, before = stack.pop()
                if before is None:
                    standing.pop(index, None)
                else:
                    standing[index] = before
            continue
        assert decision is not None
        stack.append((decision.index, standing.get(decision.index)))
        standing[decision.index] = decision
    return standing, stack


def read_hand_labels(pairs_dir: Path) -> dict[int, HandDecision]:
    """Every prompt's standing hand decision (skips included), replaying ``labels.jsonl``."""
    return _replay(pairs_dir)[0]


class LabelQueue:
    """The A/B queue over one pairs folder. Every :meth:`decide` and :meth:`undo` is on disk when it returns.

    The queue goes through the prompts in index order; the current item is the first one with no
    standing decision (a skipped prompt counts as handled, so reopening the queue continues after it).
    """

    def __init__(self, pairs_dir: Path) -> None:
        self.dir = Path(pairs_dir)
        self.rows = read_queue_rows(self.dir)
        self.decisions, self._stack = _replay(self.dir)
        self._edits: dict[int, dict[str, str]] = {}

    def reload(self) -> None:
        """Read the folder again (more candidates may have arrived from a running generate job)."""
        self.rows = read_queue_rows(self.dir)
        self.decisions, self._stack = _replay(self.dir)

    def current(self) -> QueueItem | None:
        """The first prompt without a decision, with pending edits applied; None when all are handled."""
        for position, row in enumerate(self.rows):
            if row.index not in self.decisions:
                a, b = pick_pair(row.candidates)
                edits = self._edits.get(row.index, {})
                a = Candidate(a.id, edits.get(a.id, a.text))
                b = Candidate(b.id, edits.get(b.id, b.text))
                return QueueItem(row.index, row.prompt, a, b, position)
        return None

    def progress(self) -> tuple[int, int, int]:
        """(decided: a, b or tie; skipped; total prompts)."""
        known = {row.index for row in self.rows}
        decided = sum(1 for i, d in self.decisions.items() if i in known and d.decision != "skip")
        skipped = sum(1 for i, d in self.decisions.items() if i in known and d.decision == "skip")
        return decided, skipped, len(self.rows)

    def edit(self, side: str, text: str) -> None:
        """Replace side ``a`` or ``b`` of the current item (kept with the next :meth:`decide`)."""
        item = self.current()
        if item is None:
            raise ValueError("nothing to edit: every prompt is decided")
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        candidate = item.a if side == "a" else item.b
        self._edits.setdefault(item.index, {})[candidate.id] = text

    def edited(self) -> dict[str, str]:
        """The pending edits of the current item (candidate id → text)."""
        item = self.current()
        return dict(self._edits.get(item.index, {})) if item is not None else {}

    def decide(self, decision: str, edited: dict[str, str] | None = None) -> HandDecision:
        """Record ``decision`` for the current item (appended and fsynced) and move on."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        item = self.current()
        if item is None:
            raise ValueError("nothing to decide: every prompt is decided")
        edits = {**self._edits.pop(item.index, {}), **(edited or {})}
        chosen = {"a": item.a.id, "b": item.b.id}.get(decision)
        rejected = {"a": item.b.id, "b": item.a.id}.get(decision)
        result = HandDecision(item.index, decision, chosen, rejected, edits if decision in ("a", "b") else {})
        self._append({"index": item.index, "decision": decision, "chosen": chosen, "rejected": rejected,
                      "edited": result.edited, "t": round(time.time(), 3)})
        self._stack.append((item.index, self.decisions.get(item.index)))
        self.decisions[item.index] = result
        return result

    def undo(self) -> int | None:
        """Revert the most recent decision not yet undone; returns its index (None: nothing to undo)."""
        if not self._stack:
            return None
        index, before = self._stack[-1]
        self._append({"index": index, "decision": "undo", "chosen": None, "rejected": None, "edited": {},
                      "t": round(time.time(), 3)})
        self._stack.pop()
        if before is None:
            self.decisions.pop(index, None)
        else:
            self.decisions[index] = before
        return index

    def _append(self, obj: dict[str, Any]) -> None:
        path = self.dir / LABELS_FILE
        line = json.dumps(obj, ensure_ascii=False) + "\n"
        created = not path.exists()
        with open(path, "ab") as fh:
            if not created and fh.tell() > 0 and _last_byte(path) != b"\n":
                line = "\n" + line  # after a torn line: start a fresh one instead of gluing onto it
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if created:
            from ..fsutil import fsync_dir

            fsync_dir(self.dir)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)
