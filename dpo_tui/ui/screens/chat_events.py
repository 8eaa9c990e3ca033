"""The chat screen's handling of worker events: streamed tokens, finished sides, rewards, errors, crashes.

Functions of the :class:`~dpo_tui.ui.screens.chat.ChatScreen` they act on, run on the UI thread by
its ``WorkerEvents`` handler (and by its keys, for :func:`request_rewards` and :func:`fail_turn`).
They change the screen's session and panes and show problems as notifications. :func:`pump` is
the thread worker that reads the worker's events and posts them as ``WorkerEvents``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.worker import get_current_worker

from ...core import chat_protocol as P
from ...core.chat_client import AdapterChoice, ChatClient
from ..chat_session import merge_event
from ..chat_text import side_stats

if TYPE_CHECKING:
    from ..widgets.chat_pane import ChatPane
    from .chat import ChatScreen

FLUSH_S = 0.05
"""Token events are merged and posted at most this often (the Markdown stream renders ~20/s)."""


def pump(screen: ChatScreen, client: ChatClient, ticket: int) -> None:
    """Thread worker: read the worker's events; post them in batches (tokens merged per side)."""
    worker = get_current_worker()
    batch: list[dict[str, Any]] = []
    last = time.monotonic()
    try:
        while not worker.is_cancelled:
            ev = client.recv(timeout=FLUSH_S)
            if ev is not None:
                merge_event(batch, ev)
            now = time.monotonic()
            if batch and (ev is None or ev.get("type") != P.TOKEN or now - last >= FLUSH_S):
                screen.post_message(screen.WorkerEvents(batch, ticket))
                batch = []
                last = now
    finally:
        client.close(timeout=2.0)


async def handle(screen: ChatScreen, ev: dict[str, Any]) -> None:
    """Apply one worker event to ``screen``."""
    kind = ev.get("type")
    rid = ev.get("id")
    turn = screen.session.turn
    purpose, data = screen.session.answer(ev)
    if "memory" in ev and isinstance(ev["memory"], dict):
        screen.memory = ev["memory"]
    panes = screen.panes
    if kind == P.READY:
        if screen.state == "starting":
            screen.set_state("loading", "loading the model…")
    elif kind == P.MODEL_LOADED:
        screen.model_info = ev
        screen.set_state("ready" if not screen.busy else "busy")
        if ev.get("chat_template") == "plain":
            screen.detail = "no chat template: plain format"
    elif kind == P.ADAPTER_LOADED:
        screen.session.loaded[str(ev.get("name"))] = str(ev.get("path"))
        if not ev.get("mixable"):
            screen.notify(f"{ev.get('name')}: {ev.get('why_not_mixable')}; its side is answered after the others.",
                          title="Chat", markup=False)
    elif kind == P.WARNING:
        screen.notify(str(ev.get("message")), title="Chat", severity="warning", markup=False)
    elif kind == P.STARTED:
        screen.gen_mode = str(ev.get("mode", ""))
    elif kind == P.TOKEN:
        side = int(ev.get("side", -1))
        if turn is not None and rid == turn.request_id and 0 <= side < len(panes):
            await panes[side].append(str(ev.get("text", "")))
    elif kind == P.SIDE_DONE:
        await _side_done(screen, ev, panes)
    elif kind == P.DONE:
        if turn is not None and rid == turn.request_id:
            turn.done = True
            turn.cancelled = bool(ev.get("cancelled"))
            screen.set_state("ready")
            if screen.session.show_rewards and not turn.cancelled:
                request_rewards(screen)
    elif kind == P.SCORES:
        show_rewards(screen, ev, data)
    elif kind == P.MEMORY_INFO:
        screen.memory = {k: v for k, v in ev.items() if k not in ("type", "id")}
    elif kind == P.ERROR:
        await _error(screen, ev, purpose, data)
    elif kind == P.CRASHED:
        await _crashed(screen, ev)


async def _side_done(screen: ChatScreen, ev: dict[str, Any], panes: list[ChatPane]) -> None:
    if len(panes) != len(screen.session.histories) or not screen.session.side_done(ev):
        return
    pane = panes[int(ev["side"])]
    text = str(ev.get("text", ""))
    if len(text) > len(pane.answer_text):  # anything the merged stream has not shown yet
        await pane.append(text[len(pane.answer_text):])
    note = None
    if ev.get("finish_reason") == "cancelled":
        note = "(stopped)"
    elif not text.strip():
        note = "(empty answer)"
    await pane.finish_answer(note)
    pane.show_stats(side_stats(ev, screen.show_timings))


async def _error(screen: ChatScreen, ev: dict[str, Any], purpose: str, data: Any) -> None:
    message = str(ev.get("message", "error"))
    hint = ev.get("hint")
    screen.notify(message + (f"\n{hint}" if hint else ""), title="Chat", severity="error", markup=False, timeout=10)
    if purpose == "load_model":
        screen.set_state("error", message)
    elif purpose == "load_adapter" and isinstance(data, AdapterChoice):
        for pane in screen.panes:
            if pane.adapter_label == data.label:
                await pane.finish_answer(f"cannot load this adapter: {message}", error=True)
    elif purpose == "generate":
        await fail_turn(screen, message)
    elif purpose == "score":
        screen.session.show_rewards = False


async def _crashed(screen: ChatScreen, ev: dict[str, Any]) -> None:
    from ...core.chat_client import crash_message

    message = crash_message(ev)
    screen.set_state("crashed", message)
    screen.notify(f"{message}\nF9 restarts it; the log is {ev.get('log')}", title="Chat worker", severity="error",
                  markup=False, timeout=15)
    screen.session.pending.clear()
    screen.session.loaded.clear()
    if screen.busy:
        await fail_turn(screen, "the chat worker stopped")


async def fail_turn(screen: ChatScreen, message: str) -> None:
    """End the turn in flight: every side without an answer says why."""
    panes = screen.panes
    for i in screen.session.fail_turn():
        if i < len(panes):
            await panes[i].finish_answer(f"(no answer: {message})", error=True)
    if screen.state == "busy":
        screen.set_state("ready")


def request_rewards(screen: ChatScreen) -> None:
    """Ask the worker for the implicit reward of every answer of the newest turn."""
    client = screen.client
    items, where = screen.session.reward_items(screen.tuned)
    if items and client is not None:
        screen.send({"op": P.SCORE, "id": client.new_id("s"), "items": items}, "score", (screen.session.turn, where))


def show_rewards(screen: ChatScreen, ev: dict[str, Any], data: Any) -> None:
    if not data:
        return
    turn, where = data
    if turn is not screen.session.turn or screen.session.turn is None:
        return
    turn = screen.session.turn
    panes = screen.panes
    for item, (side, adapter) in zip(ev.get("items", []), where, strict=False):
        turn.rewards[side] = item
        if side < len(panes) and side in turn.sides:
            label = "" if side >= 1 or len(screen.tuned) == 1 else f" by {adapter.label}"
            stats = Text(f"reward {item['reward']:+.3f}{label}", style="bold")
            stats.append(" · ")
            stats.append_text(side_stats(turn.sides[side], screen.show_timings))
            panes[side].show_stats(stats)
