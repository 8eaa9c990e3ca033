"""Saving a chat judgement: the better answer as chosen, the other as rejected, in a file the data check accepts.

Pure (no widgets): the chat screen's F7/F8 call :func:`save_judgement` and show its outcome.
Single-turn chats without a system prompt are saved in the standard form, anything longer in the
conversational form, each kind in its own file (``core.chat_protocol.judgements_path``), so every
file holds one format and trains as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core import chat_protocol as P
from .chat_session import ChatSession
from .messages import Severity


@dataclass(frozen=True)
class JudgementOutcome:
    """What saving a judgement did, worded for the operator."""

    message: str
    severity: Severity = "information"
    path: Path | None = None
    """The file the row was appended to (None when nothing was saved)."""


def save_judgement(session: ChatSession, side: int, runs_root: Path, model: str) -> JudgementOutcome | None:
    """Append "side ``side`` (0 left, 1 right) is better" for the newest turn; None when it cannot be judged."""
    if not session.can_judge():
        return None
    judgement = session.judgement(side, runs_root, model)
    if judgement is None:
        return JudgementOutcome("Both answers are the same: nothing to learn from this pair.", "warning")
    try:
        P.append_judgement(judgement.path, judgement.row)
    except OSError as exc:
        return JudgementOutcome(f"Cannot write {judgement.path}: {exc}", "error")
    session.judged()
    which = "left" if side == 0 else "right"
    return JudgementOutcome(f"Saved: {which} chosen → {judgement.path}", path=judgement.path)
