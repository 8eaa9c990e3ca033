"""The one-line header: app name, the modes (current one highlighted), host and GPU memory."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ..format import GIB

MODE_LABELS = (("setup", "1 Setup"), ("runs", "2 Runs"), ("monitor", "3 Monitor"), ("chat", "4 Chat"))


def gpu_summary(inventory: Any) -> str:
    """``GPU0 71.2/79.6G free`` for one GPU, ``4 GPUs 301/320G free`` for several, or the CPU/RAM line.

    ``inventory`` is a ``core.gpus.GpuInventory`` (None until the first read). Only the GPUs this
    console may use count, as in the picker: ``CUDA_VISIBLE_DEVICES`` hides the others.
    """
    if inventory is None:
        return "GPUs: …"
    gpus = inventory.visible()
    if not gpus:
        avail, total = inventory.ram_available, inventory.ram_total
        ram = f" · RAM {avail / GIB:.0f}/{total / GIB:.0f}G free" if avail and total else ""
        return f"CPU only{ram}"
    free = [float(g.memory_free) for g in gpus]
    total = [float(g.memory_total) for g in gpus]
    if len(gpus) == 1:
        return f"GPU{gpus[0].index} {free[0] / GIB:.1f}/{total[0] / GIB:.1f}G free"
    if len(gpus) <= 3:
        return " ".join(f"G{g.index} {f / GIB:.0f}/{t / GIB:.0f}G" for g, f, t in zip(gpus, free, total, strict=True))
    return f"{len(gpus)} GPUs {sum(free) / GIB:.0f}/{sum(total) / GIB:.0f}G free"


class StatusHeader(Widget):
    """Docked at the top of every screen. The app sets ``inventory``; ``mode`` follows the app."""

    mode: reactive[str] = reactive("setup")
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

    def _mode_changed(self, mode: str) -> None:
        self.mode = mode

    def _inventory_changed(self, inventory: Any) -> None:
        self.inventory = inventory

    def render(self) -> Text:
        left = Text(" dpo-tui ", style="bold")
        for mode, label in MODE_LABELS:
            style = "reverse bold" if mode == self.mode else "dim"
            left.append(f" {label} ", style=style)
            left.append(" ")
        right = Text(f"{self.host} · {gpu_summary(self.inventory)} ")
        width = self.size.width
        room = width - left.cell_len
        if right.cell_len > room:
            right.truncate(max(0, room), overflow="ellipsis")
        gap = max(0, width - left.cell_len - right.cell_len)
        return Text.assemble(left, " " * gap, right)
