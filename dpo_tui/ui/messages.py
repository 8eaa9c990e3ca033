"""Messages that cross screens. A widget's own messages live inside the widget class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class GpuInventoryChanged(Message):
    """The app refreshed its GPU inventory (``core.gpus.GpuInventory`` or None)."""

    inventory: Any


@dataclass
class RunLaunched(Message):
    """A run was created and its supervisor started."""

    run_id: str


@dataclass
class Notice(Message):
    """Something an operator should read (posted by workers; the app shows it as a notification).

    ``text`` is already fit for an operator: a UserError's rendering, never a traceback.
    """

    title: str
    text: str
    severity: str = "information"
