"""Command palette: the console's own actions, each once, found by what they do.

One declaration (a ``Binding`` with an id, a description and a tooltip) gives the key, the footer
entry, the palette entry and the keymap id, so the palette can never miss an action. Listed:

- the modes, by name (``Setup: model, dataset, experiment``, ``Runs overview``, …);
- every action of the current screen (and of the focused widget, e.g. the model list's Choose) and
  the global ones, titled by their description;
- the actions of the other modes' main screens, so "export" finds the runs screen's Export from
  anywhere: picking one switches to that mode and runs it there.

Bindings without an id are Textual's own (cursor moves, Maximize, Screenshot) and stay out.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

from textual.binding import Binding, BindingsMap
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

Command = tuple[str, str, Callable[[], Any]]


def console_bindings(bindings: BindingsMap, keymap: Mapping[str, str]) -> dict[str, tuple[Binding, list[str]]]:
    """id → (binding, its keys) for the bindings the console declared (an id and a description)."""
    bindings = bindings.copy()
    if keymap:
        bindings.apply_keymap(keymap)
    found: dict[str, tuple[Binding, list[str]]] = {}
    for key, binding in bindings:
        if binding.id and binding.description:
            found.setdefault(binding.id, (binding, []))[1].append(key)
    return found


class BindingsProvider(Provider):
    """The modes, the current screen's actions and the global ones, then the other modes' actions."""

    def _keys(self, binding: Binding, keys: list[str]) -> str:
        app = self.app
        return " / ".join(app.get_key_display(Binding(k, binding.action, key_display=binding.key_display if k == keys[0] else None))
                          for k in keys)

    def _commands(self) -> list[Command]:
        return list(self._modes()) + list(self._here()) + list(self._elsewhere())

    def _modes(self) -> Iterator[Command]:
        from .app import MODE_TITLES

        app: Any = self.app
        keys = console_bindings(app._bindings, app._keymap)
        for mode, title in MODE_TITLES.items():
            binding_keys = keys.get(f"app.mode.{mode}")
            key = self._keys(*binding_keys) if binding_keys else "–"
            here = " (you are here)" if mode == app.current_mode else ""
            yield title, f"Go to the {mode} mode{here} · key {key}", partial(app.action_mode, mode)

    def _here(self) -> Iterator[Command]:
        screen, app = self.screen, self.app
        label = type(screen).__name__.removesuffix("Screen").removesuffix("Dialog")
        seen: set[str] = set()
        for node, _ in screen._modal_binding_chain:  # focused widget, its containers, the screen, the app
            for binding_id, (binding, keys) in console_bindings(node._bindings, app._keymap).items():
                if binding_id in seen or binding_id.startswith("app.mode.") or binding.action == "command_palette":
                    continue
                seen.add(binding_id)
                if not app._check_action_state(binding.action, node):
                    continue  # hidden or not possible now
                where = "" if node is app else f"{label}: "
                help_text = f"{binding.tooltip or binding.description} · key {self._keys(binding, keys)}"
                yield f"{where}{binding.description}", help_text, partial(app.run_action, binding.action, node)

    def _elsewhere(self) -> Iterator[Command]:
        from .app import MODE_SCREENS

        app: Any = self.app
        for mode, (module, name) in MODE_SCREENS.items():
            if mode == app.current_mode:
                continue
            screen_class = getattr(importlib.import_module(f"{__package__}.screens.{module}"), name)
            for binding, keys in console_bindings(screen_class._merged_bindings or BindingsMap(), app._keymap).values():
                help_text = f"{binding.tooltip or binding.description} · in {mode}, key {self._keys(binding, keys)}"
                yield f"{mode.capitalize()}: {binding.description}", help_text, partial(self._run_in, mode, binding.action)

    def _run_in(self, mode: str, action: str) -> None:
        app: Any = self.app
        base: DOMNode = app._mode_base(mode)
        app.call_after_refresh(self._run_or_explain, action, base)

    async def _run_or_explain(self, action: str, node: DOMNode) -> None:
        """Run ``action`` on ``node``; when it is not possible there, say why (``ConsoleScreen.why_not``)."""
        app: Any = self.app
        _, name, parameters = app._parse_action(action, node)
        if node.check_action(name, parameters):
            await app.run_action(action, node)
            return
        why_not = getattr(node, "why_not", None)
        text = why_not(name, parameters) if why_not is not None else None
        app.notify(text or f"Not possible in {app.current_mode} now.", severity="warning", markup=False)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
