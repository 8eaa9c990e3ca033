"""Command palette: every action of the current screen (and the global ones), from its bindings.

One declaration (a ``Binding`` with an id, a description and a tooltip) gives the key, the footer
entry, the palette entry and the keymap id, so the palette can never miss an action.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider


class BindingsProvider(Provider):
    """Every action of the current screen (and the global ones) in the command palette."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        app = self.app
        commands: list[tuple[str, str, Callable[[], Any]]] = []
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or not active.enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            namespace = active.node
            label = binding.description
            where = "" if namespace is app else f"{type(screen).__name__.removesuffix('Screen')}: "
            key = app.get_key_display(binding)
            commands.append((f"{where}{label}", f"{binding.tooltip or label} (key: {key})", partial(app.run_action, binding.action, namespace)))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
