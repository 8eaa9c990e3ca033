"""Pick the GPUs for a run (modal): each GPU's free memory, load, and who else is on it.

Dismisses with the chosen GPU indices (sorted; ``[]`` = "the first ``nproc`` GPUs", the default),
or None when cancelled. ``space`` toggles the highlighted GPU, ``a`` picks every GPU nobody else
is using, ``enter`` confirms. Without GPUs it says so and what a multi-process run does instead
(processes over gloo on the CPU).

The rows are built by :func:`gpu_row` and :func:`others_text`, pure functions of a
``core.gpus.GpuInventory``.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from ..format import GIB

# Fits 80 columns with the widest "used by others" cell of one process (``bob pid 4242 12.0G``).
COLUMNS = (("pick", "", 1), ("gpu", "GPU", 3), ("name", "name", 15), ("free", "free / total", 13), ("util", "util", 4), ("others", "used by others", 22))


def others_text(gpu: Any, user: str | None = None) -> str:
    """``bob pid 4242 12.0G, …`` for the processes of other users on ``gpu``; ``—`` when none."""
    procs = gpu.others(user)
    if not procs:
        return "—"
    parts = []
    for p in sorted(procs, key=lambda p: -(p.used_bytes or 0)):
        used = f" {p.used_bytes / GIB:.1f}G" if p.used_bytes else ""
        parts.append(f"{p.user or 'unknown user'} pid {p.pid}{used}")
    return ", ".join(parts)


def gpu_row(gpu: Any, picked: bool, user: str | None = None) -> list[Any]:
    util = f"{gpu.utilization}%" if gpu.utilization is not None else "?"
    others = others_text(gpu, user)
    return [
        Text("✓" if picked else "·", style="bold" if picked else "dim"),
        str(gpu.index),
        gpu.name,
        f"{gpu.memory_free / GIB:.1f}/{gpu.memory_total / GIB:.1f}G",
        util,
        Text(others, style="bold" if others != "—" else "dim"),
    ]


def picked_summary(inventory: Any, picked: list[int], nproc: int, strategy: str) -> str:
    """What confirming would do, in one line."""
    gpus = inventory.visible()
    if not picked:
        count = min(nproc, len(gpus))
        return f"nothing picked: the run takes the first {count} GPU{'s' if count != 1 else ''} ({strategy})"
    free = min((g.memory_free for g in gpus if g.index in picked), default=0)
    ids = ",".join(str(i) for i in picked)
    if len(picked) == 1:
        return f"GPU {ids}: one process, {free / GIB:.1f} GiB free"
    return f"GPU {ids}: {len(picked)} processes ({strategy}), {free / GIB:.1f} GiB free on the fullest"


class GpuPickerDialog(ModalScreen[list[int] | None]):
    BINDINGS = [
        Binding("space", "toggle_gpu", "Pick", id="gpus.toggle", tooltip="Pick or drop the highlighted GPU"),
        Binding("a", "pick_idle", "Idle GPUs", id="gpus.idle", tooltip="Pick every GPU nobody else is using"),
        Binding("enter", "confirm", "Use", id="gpus.confirm", priority=True, tooltip="Use the picked GPUs for this run"),
        Binding("escape", "cancel", "Cancel", id="gpus.cancel", tooltip="Keep the previous choice"),
    ]

    def __init__(self, inventory: Any, picked: list[int], nproc: int, strategy: str, user: str | None = None) -> None:
        super().__init__()
        self.inventory = inventory
        has_gpus = inventory is not None and getattr(inventory, "gpus", None)
        self.gpus: list[Any] = inventory.visible() if has_gpus else []
        """The GPUs on offer: those CUDA_VISIBLE_DEVICES leaves to this console (the inventory is a snapshot)."""
        usable = {g.index for g in self.gpus}
        self.picked = sorted(set(picked) & usable)  # a GPU typed in the form that is not here is dropped
        self.nproc = nproc
        self.strategy = strategy
        self.user = user

    def hidden_note(self) -> str:
        hidden = [g.index for g in self.inventory.gpus if g not in self.gpus] if self.gpus else []
        return f"GPU {','.join(map(str, hidden))} hidden by CUDA_VISIBLE_DEVICES (not offered)" if hidden else ""

    def compose(self) -> ComposeResult:
        with Vertical(id="gpus-box"):
            yield Label("Devices for this run", id="gpus-title")
            if self.gpus:
                yield Label("space picks · a picks the idle ones · enter uses them · esc cancels", id="gpus-hint")
                if hidden := self.hidden_note():
                    yield Label(hidden, id="gpus-hidden")
                table: DataTable[Any] = DataTable(id="gpus-table", cursor_type="row", zebra_stripes=True)
                for key, label, width in COLUMNS:
                    table.add_column(label, key=key, width=width)
                yield table
                yield Label("", id="gpus-summary")
            else:
                reason = getattr(self.inventory, "error", None) if self.inventory is not None else "the GPU inventory is still being read"
                if self.nproc > 1:
                    how = f": nproc {self.nproc} starts {self.nproc} processes over gloo (strategy ddp)."
                else:
                    how = " in one process; nproc above 1 starts several over gloo (strategy ddp)."
                yield Label(f"No GPU is visible ({reason or 'no NVIDIA GPU found'}). Runs train on the CPU{how}", id="gpus-none")
                yield Label("enter or esc closes", id="gpus-hint")

    def on_mount(self) -> None:
        if self.gpus:
            self._fill()
            self.query_one("#gpus-table", DataTable).focus()

    def _fill(self) -> None:
        table = self.query_one("#gpus-table", DataTable)
        row = table.cursor_row
        table.clear()
        for gpu in self.gpus:
            table.add_row(*gpu_row(gpu, gpu.index in self.picked, self.user), key=str(gpu.index))
        table.move_cursor(row=max(0, min(row, table.row_count - 1)), animate=False)
        self.query_one("#gpus-summary", Label).update(picked_summary(self.inventory, self.picked, self.nproc, self.strategy))

    def action_toggle_gpu(self) -> None:
        if not self.gpus:
            return
        index = self.gpus[self.query_one("#gpus-table", DataTable).cursor_row].index
        self.picked = sorted(set(self.picked) ^ {index})
        self._fill()

    def action_pick_idle(self) -> None:
        if self.gpus:
            self.picked = [g.index for g in self.gpus if not g.others(self.user)]
            self._fill()

    def action_confirm(self) -> None:
        self.dismiss(self.picked if self.gpus else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
