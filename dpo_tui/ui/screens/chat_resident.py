"""The chat worker an app keeps loaded, for screens other than Chat to show and release.

Leaving the chat mode keeps its screen, and with it the worker process (the base model in RAM, or
on a GPU its VRAM), so that coming back answers at once. A run launched meanwhile competes for that
memory; the runs and experiment screens can say so and offer the release::

    from dpo_tui.ui.screens.chat_resident import resident_chat, release_chat

    chat = resident_chat(self.app)   # None when no chat worker is loaded
    if chat is not None:
        line = f"chat model loaded ({chat.describe()}) — release"
        ...
    release_chat(self.app)           # what the chat screen's F10 does

Both run on the UI thread. The chat screen registers itself when it mounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from textual.app import App

    from .chat import ChatScreen

_SCREENS: WeakKeyDictionary[App[object], ChatScreen] = WeakKeyDictionary()


@dataclass(frozen=True)
class ResidentChat:
    """A loaded chat worker: which base model, and the memory it holds."""

    model: str
    """The base model's folder name (``tiny-chat`` for the bundled sample)."""
    ram_mib: int
    """Resident memory of the worker process."""
    gpu_mib: int | None
    """GPU memory it holds (None on CPU)."""

    def describe(self) -> str:
        """``tiny-chat, 390 MiB`` or ``Qwen2.5-0.5B, GPU 1210 MiB``."""
        if self.gpu_mib is not None:
            return f"{self.model}, GPU {self.gpu_mib} MiB"
        return f"{self.model}, {self.ram_mib} MiB"


def register(app: App[object], screen: ChatScreen) -> None:
    _SCREENS[app] = screen


def resident_chat(app: App[object]) -> ResidentChat | None:
    """The chat worker ``app`` keeps loaded, or None when none is running."""
    screen = _SCREENS.get(app)
    return screen.resident() if screen is not None else None


def release_chat(app: App[object]) -> bool:
    """Stop ``app``'s chat worker and free its memory; False when none was running."""
    screen = _SCREENS.get(app)
    return screen.release_worker() if screen is not None else False
