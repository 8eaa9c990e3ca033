"""The footer every console screen shows: Textual's ``Footer``, rebuilt only when what it shows changed.

Textual's footer removes and re-mounts all its key widgets whenever its screen publishes
``bindings_updated`` — on every focus change, every ``refresh_bindings()`` (the runs table calls it
on each cursor move), and twice per mode switch (the screen left and the screen shown). Each rebuild
styles, lays out and paints a dozen new widgets: about a third of a mode switch's time, and most of
a cursor move's (``bench/key_latency.py``; ``docs/design/latency.md``). This footer compares what it
would show (keys, labels, enabled state, tooltips) with what it shows and rebuilds only on a
difference, and never while its screen is hidden: showing the screen again publishes
``bindings_updated``, which brings it up to date.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class ConsoleFooter(Footer):
    """``Footer`` that skips rebuilds which would show the same keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[Any, ...] | None = None
        """What the last rebuild showed (:meth:`_signature`); None before the first one."""

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and screen.is_current:
            self.call_after_refresh(self._recompose_if_changed)

    def _signature(self) -> tuple[Any, ...]:
        """Everything ``Footer.compose`` reads, in its order."""
        app = self.app
        keys = tuple(
            (key, binding.key, app.get_key_display(binding), binding.description, binding.action, binding.show,
             enabled, tooltip, binding.tooltip, (binding.group.description, binding.group.compact) if binding.group else None)
            for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items()
        )
        return (self.show_command_palette, app.ENABLE_COMMAND_PALETTE, app.COMMAND_PALETTE_BINDING, keys)

    async def _recompose_if_changed(self) -> None:
        if not self.is_attached:
            return
        signature = self._signature()
        if signature == self._shown:
            return
        self._shown = signature
        await self.recompose()
