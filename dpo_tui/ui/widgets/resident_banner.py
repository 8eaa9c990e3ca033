"""One line on the experiment and runs screens while the chat worker keeps its model loaded.

Leaving Chat keeps the worker (and its RAM, or on a GPU its VRAM) so that coming back answers at
once; a run launched meanwhile competes for that memory. The banner says so and names the key that
releases it (F10, the same key as in Chat)::

    yield ResidentBanner(id="runs-resident")          # in compose: hidden while no chat model is loaded
    resident_changed(app)                              # the chat screen, when its worker loads, changes, or goes

:func:`resident_changed` posts :class:`ResidentBanner.Changed` to every banner of the app only when
what a banner would say differs from the last time, so calling it on every chat worker event is cheap
and no banner polls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary, WeakSet

from textual.message import Message
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.app import App
    from textual.dom import DOMNode

    from ..screens.chat_resident import ResidentChat

RELEASE_KEY = "F10"

_BANNERS: WeakSet[ResidentBanner] = WeakSet()
_LAST: WeakKeyDictionary[App[object], str] = WeakKeyDictionary()


def banner_text(chat: ResidentChat | None) -> str:
    """``Chat model still loaded (tiny-chat, ~390 MiB) — F10 releases it``; empty when none is loaded."""
    if chat is None:
        return ""
    if chat.gpu_mib is not None:
        memory = f", GPU ~{chat.gpu_mib} MiB"
    else:
        memory = f", ~{chat.ram_mib} MiB" if chat.ram_mib else ""
    return f"Chat model still loaded ({chat.model}{memory}) — {RELEASE_KEY} releases it"


def _current(app: App[object]) -> str:
    from ..screens.chat_resident import resident_chat

    return banner_text(resident_chat(app))


def resident_changed(app: App[object]) -> None:
    """Tell ``app``'s banners that the chat worker may have loaded, changed its memory, or gone.
    Runs on the UI thread."""
    text = _current(app)
    if _LAST.get(app) == text:
        return
    _LAST[app] = text
    for banner in list(_BANNERS):
        if banner.is_attached and banner.app is app:
            banner.post_message(ResidentBanner.Changed())


class ResidentBanner(Static):
    """Hidden while no chat model is loaded; otherwise the model, its memory and the release key."""

    class Changed(Message):
        """The chat worker loaded, its memory changed, or it was released (posted by :func:`resident_changed`)."""

    def on_mount(self) -> None:
        _BANNERS.add(self)
        self.show_current()

    def on_unmount(self) -> None:
        _BANNERS.discard(self)

    def on_resident_banner_changed(self, _message: Changed) -> None:
        self.show_current()

    def show_current(self) -> None:
        text = _current(self.app)
        self.update(text)
        self.display = bool(text)


def release_resident_chat(node: DOMNode) -> None:
    """What F10 does on the experiment and runs screens: release Chat's worker and its memory."""
    from ..screens.chat_resident import release_chat

    app = node.app
    if release_chat(app):
        app.notify("Chat model released: its memory is free for runs. Asking in Chat loads it again.", title="Chat")
    else:
        app.notify("No chat model is loaded.", title="Chat")
    resident_changed(app)
