"""Input that respects the app's ``animate`` switch (no cursor blink in tests and snapshots)."""

from __future__ import annotations

from textual.widgets import Input


class FieldInput(Input):
    def on_mount(self) -> None:
        services = getattr(self.app, "services", None)
        if services is not None and not services.animate:
            self.cursor_blink = False
