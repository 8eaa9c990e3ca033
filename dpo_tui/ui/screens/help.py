"""The keys of the screen underneath, and the global ones, as a modal (``?`` or F1)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label

from .base import is_text_box


def binding_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(keys, action description, where) for every binding that applies on ``screen`` (hidden ones too).

    ``where`` is ``global``, ``screen``, or ``here`` for the console's keys of the focused widget
    (the model list's enter).
    """
    app = screen.app
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for namespace, bindings in screen._modal_binding_chain:
        where = "global" if namespace is app else ("screen" if namespace is screen else "here")
        for _, binding in bindings:
            if where == "here" and not binding.id:
                continue  # Textual's own keys of the focused widget (cursor moves, editing): listed in docs/keys.md
            if not binding.description or binding.action in seen:
                continue
            if binding.action == "leave_box" and not is_text_box(screen.focused):
                continue  # escape means what the screen says unless a text box has focus
            seen.add(binding.action)
            keys = app.get_key_display(binding)
            others = [k for k in binding.key.split(",")[1:]]
            if others:
                keys += " / " + " / ".join(app.get_key_display(Binding(k, binding.action)) for k in others)
            rows.append((keys, binding.tooltip or binding.description, where))
    return rows


class HelpScreen(ModalScreen[None]):
    """Lists the keys; escape, ``q`` or ``?`` closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close", id="help.close")]

    def __init__(self, underneath: Screen) -> None:
        super().__init__()
        self.underneath = underneath

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label(f"Keys: {self.underneath.__class__.__name__.removesuffix('Screen').lower()} screen", id="help-title")
            table: DataTable[str] = DataTable(id="help-table", cursor_type="row", show_cursor=False)
            table.add_columns("key", "action", "where")
            for row in binding_rows(self.underneath):
                table.add_row(*row)
            yield table
            yield Label("ctrl+p opens the command palette: every action is there too.  esc closes.", id="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
