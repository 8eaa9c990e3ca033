"""Ask for a file path (modal). Dismisses with the path, or None when cancelled.

The suggested file goes in the folder that holds the runs root (``$DPO_TUI_HOME`` by default, or
the parent of ``--runs-dir``), not the current directory: the console's current directory is
wherever it happened to be started (a home folder, a checkout, ``/`` under tmux or a service), so a
config saved there is hard to find again, while the runs root's parent is the same on every start
and sits beside the runs the config describes. The full path is shown, so it can be changed.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from ..services import services_of
from ..widgets.inputs import FieldInput


def suggested_path(runs_root: Path, default: str) -> str:
    """``default``'s file name in the folder that holds ``runs_root`` (see the module docstring)."""
    return str(runs_root.expanduser().parent / Path(default).name)


class SavePathDialog(ModalScreen[str | None]):
    """``default`` suggests the file name; the folder is the runs root's parent."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="save.cancel")]

    def __init__(self, title: str, default: str) -> None:
        super().__init__()
        self.title_text = title
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="save-box"):
            yield Label(self.title_text, id="save-title")
            yield FieldInput(suggested_path(services_of(self).runs_root, self.default), id="save-path")
            yield Label("enter saves · esc cancels", id="save-hint")

    def on_mount(self) -> None:
        self.query_one("#save-path", Input).focus()

    @on(Input.Submitted, "#save-path")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
