"""Run-outcome notifications, the pure part: which runs just ended, and the terminal escape that says so.

The app keeps a snapshot ``{run_id: state}`` of the runs root and compares each new one with the
last (:func:`transitions`). Only a run seen *active* that is now *terminal* counts, so runs that
had already ended when the console opened never notify. :func:`osc9` builds the desktop
notification escape (OSC 9, shown by iTerm2, WezTerm, kitty, Windows Terminal, foot, ghostty…),
wrapped for tmux's passthrough when the console runs inside tmux.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..core.run_states import ACTIVE_STATES, TERMINAL_STATES

TERMINAL = TERMINAL_STATES
"""Ended run states: a watched run notifies on reaching one."""

SEVERITY = {"finished": "information", "stopped": "warning", "failed": "error", "crashed": "error"}


@dataclass(frozen=True)
class RunState:
    """What the watcher knows about one run: its state and, once ended, why."""

    state: str
    kind: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Transition:
    run_id: str
    before: str
    after: RunState

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.after.state, "information")

    def title(self) -> str:
        return f"Run {self.after.state}"

    def text(self) -> str:
        """``20251126-…-b0.1 failed (oom): CUDA out of memory``."""
        out = f"{self.run_id} {self.after.state}"
        if self.after.kind and self.after.state != "finished":
            out += f" ({self.after.kind})"
        if self.after.message and self.after.state in ("failed", "crashed"):
            out += f": {self.after.message}"
        return out


def transitions(before: Mapping[str, RunState], after: Mapping[str, RunState]) -> list[Transition]:
    """Runs that were active in ``before`` and are terminal in ``after``, in ``after``'s order.

    A run absent from ``before`` (created since, or first seen now) never counts: the console only
    speaks up about runs it watched end.
    """
    out = []
    for run_id, now in after.items():
        then = before.get(run_id)
        if then is not None and then.state in ACTIVE_STATES and now.state in TERMINAL_STATES:
            out.append(Transition(run_id, then.state, now))
    return out


def _clean(text: str) -> str:
    """No control characters: a message must not end the escape early or start another one."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def osc9(text: str, tmux: bool = False) -> str:
    """The OSC 9 desktop notification ``ESC ] 9 ; text BEL``; inside tmux, wrapped in its passthrough
    (``ESC P tmux; …ESC\\`` with every ESC of the payload doubled; tmux needs ``allow-passthrough on``).
    """
    payload = f"\x1b]9;{_clean(text)}\x07"
    if not tmux:
        return payload
    return "\x1bPtmux;" + payload.replace("\x1b", "\x1b\x1b") + "\x1b\\"
