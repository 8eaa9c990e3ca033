"""The one-line header: app name, the modes (current one highlighted), host and GPU memory.

Each mode is shown with the key that switches to it *where the focus is*: the digits when they act
as keys, the F-keys while a text box has focus (there digits are text). The keys come from the
screen's active bindings (so a keymap from settings.toml shows too), read again whenever the focus
moves or the screen's bindings change. Every mode is listed; one whose key does not work where the
focus is shows without a key.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ScreenStackError
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widget import Widget

from ..format import GIB

MODE_LABELS = (("setup", "1 Setup"), ("runs", "2 Runs"), ("monitor", "3 Monitor"), ("chat", "4 Chat"), ("pairs", "5 Pairs"))
MODE_NAMES = {"setup": "Setup", "runs": "Runs", "monitor": "Monitor", "chat": "Chat", "pairs": "Pairs"}


def key_label(display: str) -> str:
    """``F3`` for Textual's ``f3``; other key displays as they are."""
    return display.upper() if display[:1] == "f" and display[1:].isdigit() else display


def mode_keys(screen: Any) -> dict[str, str]:
    """The key that switches to each mode from ``screen`` as it is focused now (absent: none works),
    and under ``show_keys`` the key that lists the keys."""
    app = screen.app
    keys: dict[str, str] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if active.node is not app:
            continue
        if binding.action.startswith("mode('"):
            keys.setdefault(binding.action[len("mode('"):-len("')")], key_label(app.get_key_display(binding)))
        elif binding.action == "show_keys":
            keys.setdefault("show_keys", key_label(app.get_key_display(binding)))
    return keys


def gpu_summary(inventory: Any, level: int = 0) -> str:
    """``GPU0 71.2/79.6G free`` for one GPU, ``4 GPUs 301/320G free`` for several, or the CPU/RAM line.

    ``inventory`` is a ``core.gpus.GpuInventory`` (None until the first read). Only the GPUs this
    console may use count, as in the picker: ``CUDA_VISIBLE_DEVICES`` hides the others. ``level`` 1 and 2
    are shorter forms of the same facts for a narrow header (whole numbers, then free memory only), so
    the figure is dropped to fewer words rather than cut mid-number.
    """
    if inventory is None:
        return "GPUs: …"
    gpus = inventory.visible()
    if not gpus:
        avail, total = inventory.ram_available, inventory.ram_total
        if not (avail and total):
            return "CPU only"
        ram = (f"RAM {avail / GIB:.0f}/{total / GIB:.0f}G free", f"RAM {avail / GIB:.0f}G free")[min(level, 2) // 2]
        return ram if level else f"CPU only · {ram}"
    free = [float(g.memory_free) for g in gpus]
    total = [float(g.memory_total) for g in gpus]
    if len(gpus) == 1:
        if level >= 2:
            return f"GPU{gpus[0].index} {free[0] / GIB:.0f}G free"
        digits = ".0f" if level else ".1f"
        return f"GPU{gpus[0].index} {free[0] / GIB:{digits}}/{total[0] / GIB:{digits}}G free"
    if len(gpus) <= 3 and level == 0:
        return " ".join(f"G{g.index} {f / GIB:.0f}/{t / GIB:.0f}G" for g, f, t in zip(gpus, free, total, strict=True))
    if level >= 2:
        return f"{len(gpus)} GPUs {sum(free) / GIB:.0f}G free"
    return f"{len(gpus)} GPUs {sum(free) / GIB:.0f}/{sum(total) / GIB:.0f}G free"


class StatusHeader(Widget):
    """Docked at the top of every screen. The app sets ``inventory``; ``mode`` follows the app."""

    mode: reactive[str] = reactive("setup")
    keys: reactive[dict[str, str]] = reactive(dict, always_update=True)
    """Mode (and ``show_keys``) → the key that works where the focus is."""
    inventory: reactive[Any] = reactive(None, always_update=True)
    host: reactive[str] = reactive("")

    def on_mount(self) -> None:
        app = self.app
        self.host = app.services.host_label if hasattr(app, "services") else ""
        self.inventory = getattr(app, "gpu_inventory", None)
        self.mode = app.current_mode
        app.mode_change_signal.subscribe(self, self._mode_changed)
        if hasattr(app, "inventory_signal"):
            app.inventory_signal.subscribe(self, self._inventory_changed)
        if hasattr(app, "settings_signal"):  # a keymap may rebind the mode keys
            app.settings_signal.subscribe(self, lambda _settings: self._focus_changed())
        self.watch(self.screen, "focused", self._focus_changed)
        # A screen's own binding may take a mode's key while it applies (the experiment form's F6
        # applies a VRAM suggestion): read the keys again whenever the screen's bindings change.
        self.screen.bindings_updated_signal.subscribe(self, self._focus_changed)

    def _focus_changed(self, *_: Any) -> None:
        try:
            keys = mode_keys(self.screen)
        except (ScreenStackError, NoMatches):  # the app is closing its screens, or this one is still composing
            return  # (its check_action may query a widget not mounted yet; its focus and bindings update again)
        if keys != self.keys:  # bindings refresh often (every runs listing): repaint only on a change
            self.keys = keys

    def _mode_changed(self, mode: str) -> None:
        self.mode = mode

    def _inventory_changed(self, inventory: Any) -> None:
        self.inventory = inventory

    def render(self) -> Text:
        left = Text(" dpo-tui ", style="bold")
        keys = self.keys
        digits = all(keys.get(mode, digit) == digit for mode, digit in (("setup", "1"), ("runs", "2"), ("monitor", "3"), ("chat", "4"), ("pairs", "5")))
        for mode, label in MODE_LABELS:
            style = "reverse bold" if mode == self.mode else "dim"
            if digits:
                left.append(f" {label} ", style=style)
                left.append(" ")  # room between the modes; the F-key labels are one wider each
            else:
                key = keys.get(mode)
                left.append(f" {key} {MODE_NAMES[mode]} " if key else f" {MODE_NAMES[mode]} ", style=style)
        width = self.size.width
        # The longest form of host and memory that fits: shorter forms drop words, never cut a number.
        forms = [f"{self.host} · {gpu_summary(self.inventory, level)} " for level in (0, 1, 2)] if self.host else []
        forms += [f"{gpu_summary(self.inventory, level)} " for level in (0, 1, 2)]
        room = width - left.cell_len
        right = Text(next((form for form in forms if len(form) <= room), forms[-1]))
        help_key = keys.get("show_keys")
        if not digits and help_key and width - left.cell_len - right.cell_len >= len(help_key) + 7:
            left.append(f" {help_key} Keys ", style="dim")
            room = width - left.cell_len
        if right.cell_len > room:
            right.truncate(max(0, room), overflow="ellipsis")
        gap = max(0, width - left.cell_len - right.cell_len)
        return Text.assemble(left, " " * gap, right)
