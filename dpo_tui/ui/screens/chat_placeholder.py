"""Placeholder for the ``chat`` mode until ``ui/screens/chat.py`` (helper-5's issue) exists.

The contract the real chat screen keeps (``DpoTuiApp.open_chat`` relies on it):

- it is the base screen of the ``chat`` mode and takes no constructor arguments;
- ``set_run(run_id: str | None)`` preselects a run's adapter for the "tuned" pane; it may be
  called before the screen is mounted, and the screen also reads ``app.chat_run_id`` on mount.

``app.py`` picks ``dpo_tui.ui.screens.chat.ChatScreen`` when that module exists, else this.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Footer

from ..widgets.header import StatusHeader
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen


class ChatPlaceholderScreen(ConsoleScreen):
    def __init__(self) -> None:
        super().__init__()
        self.run_id: str | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="chat-placeholder")
        yield Footer()

    def on_mount(self) -> None:
        self.set_run(self.run_id or getattr(self.app, "chat_run_id", None))

    def set_run(self, run_id: str | None) -> None:
        self.run_id = run_id
        if not self.is_mounted:
            return
        text = Text("Chat is not built yet.", style="bold")
        if run_id:
            text.append(f"\nIt will open with {run_id}'s adapter beside the base model.")
        text.append("\nMeanwhile: dpo-tui chat RUN_ID")
        self.query_one("#chat-placeholder", TextPanel).show(text)
