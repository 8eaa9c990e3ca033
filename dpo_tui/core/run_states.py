"""The run states and the sets the CLI, the console and the supervisor test them against.

Stdlib only: the console's first screen imports this, and must not wait for pydantic
(which ``core.runs`` pulls in).
"""

from __future__ import annotations

from typing import Literal

State = Literal["queued", "starting", "running", "stopping", "stopped", "finished", "failed", "crashed"]

ACTIVE_STATES = frozenset({"queued", "starting", "running", "stopping"})
"""A process is (or is about to be) working on the run: stop applies, delete and resume do not."""
TERMINAL_STATES = frozenset({"stopped", "finished", "failed", "crashed"})
"""The run has ended; only a resume (or a new run) changes it."""
RESUMABLE_STATES = frozenset({"stopped", "failed", "crashed"})
"""Ended before its last step: resume continues from the newest complete checkpoint."""
FAILED_STATES = frozenset({"failed", "crashed"})
"""Ended by an error: shown with its kind and message."""


def state_label(state: str, kind: str | None = None) -> str:
    """The word an operator reads for a run's state: a queued run that was cancelled never ran, so it
    reads ``cancelled``, not ``stopped`` (which promises a checkpoint to resume or chat with)."""
    if state == "stopped" and kind == "cancelled":
        return "cancelled"
    return state
