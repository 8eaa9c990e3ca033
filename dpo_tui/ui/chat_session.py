"""What a chat session remembers, without any widget: conversations, requests in flight, judgements.

The chat screen (``ui/screens/chat.py``) owns one :class:`ChatSession` and only *shows* it. Side 0
is the base model; side ``i >= 1`` is the ``i``-th tuned adapter. Every side keeps its own
conversation (``histories[i]``), because each side's earlier answers differ. Pure Python: no
Textual, no torch, so it is unit-tested directly (``tests/ui/test_chat_session.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import chat_protocol as P
from ..core.chat_client import AdapterChoice


def merge_event(batch: list[dict[str, Any]], ev: dict[str, Any]) -> None:
    """Append ``ev``, merging consecutive token events of the same request and side."""
    if ev.get("type") == P.TOKEN and batch:
        last = batch[-1]
        if last.get("type") == P.TOKEN and last.get("id") == ev.get("id") and last.get("side") == ev.get("side"):
            last["text"] += ev.get("text", "")
            last["n"] = ev.get("n", last.get("n"))
            return
    batch.append(dict(ev))


@dataclass
class Turn:
    """The newest exchange: the prompt, and each side's answer once it is done."""

    request_id: str
    prompt: str
    sides: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Side index → its ``side_done`` event."""
    done: bool = False
    cancelled: bool = False
    failed: bool = False
    judged: bool = False
    rewards: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Side index → its ``scores`` item (the implicit reward of that side's answer)."""


@dataclass
class Judgement:
    """One preference row ready to append, and the file it belongs in."""

    row: dict[str, Any]
    path: Path


class ChatSession:
    """Conversations per side, the newest turn, the requests the worker has not answered yet."""

    def __init__(self, settings: P.GenerationSettings | None = None) -> None:
        # Greedy first: with a shared seed and a lightly tuned adapter, sampled answers can be the
        # same on every side, which reads as "training did nothing"; greedy shows the difference.
        self.settings = settings or P.GenerationSettings(max_new_tokens=256, greedy=True)
        self.histories: list[list[dict[str, str]]] = []
        self.turn: Turn | None = None
        self.last_prompt: str | None = None
        self.show_rewards = False
        self.judged_rows = 0
        self.pending: dict[str, tuple[str, Any]] = {}
        """Request id → (purpose, data): what an answer (or an error) to that request is about."""
        self.loaded: dict[str, str] = {}
        """Adapter name → folder, as the worker has them loaded."""

    # --- conversations ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.turn is not None and not self.turn.done

    def reset(self, sides: int) -> None:
        """Empty conversations for ``sides`` sides (a new chat, or new sides)."""
        self.histories = [[] for _ in range(sides)]
        self.turn = None
        self.last_prompt = None

    def start_turn(self, request_id: str, prompt: str, tuned: list[AdapterChoice]) -> list[dict[str, Any]]:
        """Append ``prompt`` to every side's conversation; returns the ``generate`` request's sides."""
        for history in self.histories:
            history.append({"role": "user", "content": prompt})
        names = [P.BASE] + [a.adapter_name for a in tuned]
        self.turn = Turn(request_id, prompt)
        self.last_prompt = prompt
        return [P.side(name, list(history)) for name, history in zip(names, self.histories, strict=False)]

    def side_done(self, ev: dict[str, Any]) -> bool:
        """Record a ``side_done`` event of the newest turn; False when it belongs to no side shown."""
        turn = self.turn
        side = int(ev.get("side", -1))
        if turn is None or ev.get("id") != turn.request_id or not 0 <= side < len(self.histories):
            return False
        turn.sides[side] = ev
        if ev.get("finish_reason") != "cancelled":
            self.histories[side].append({"role": "assistant", "content": str(ev.get("text", "")).strip()})
        else:
            self.drop_open_prompt(side)
        return True

    def drop_open_prompt(self, side: int) -> None:
        """Forget a prompt that got no answer, so the next one does not follow two user turns."""
        history = self.histories[side]
        if history and history[-1]["role"] == "user":
            history.pop()

    def fail_turn(self) -> list[int]:
        """End the newest turn as failed; returns the sides that had no answer (their prompts are dropped)."""
        turn = self.turn
        if turn is None or turn.done:
            return []
        turn.done = turn.failed = True
        unanswered = [i for i in range(len(self.histories)) if i not in turn.sides]
        for i in unanswered:
            self.drop_open_prompt(i)
        return unanswered

    def prepare_reask(self) -> str | None:
        """Remove the newest exchange from every conversation and pick a new seed; returns the prompt."""
        if not self.last_prompt or self.busy:
            return None
        self.settings.seed += 1
        turn = self.turn
        for i, history in enumerate(self.histories):
            if turn is not None and i in turn.sides and history and history[-1]["role"] == "assistant":
                history.pop()
            self.drop_open_prompt(i)
        return self.last_prompt

    def worker_restarted(self) -> None:
        """A new worker knows no requests and no adapters; a turn in flight is lost."""
        self.pending.clear()
        self.loaded.clear()
        if self.turn is not None and not self.turn.done:
            self.turn.done = self.turn.failed = True

    # --- requests in flight ------------------------------------------------------------------------
    def track(self, request_id: str, purpose: str, data: Any = None) -> None:
        self.pending[request_id] = (purpose, data)

    def answer(self, ev: dict[str, Any]) -> tuple[str, Any]:
        """(purpose, data) of the request ``ev`` answers; a terminal event ends the request."""
        rid = ev.get("id")
        if not rid:
            return "", None
        if ev.get("type") in P.TERMINAL_FOR_REQUEST:
            return self.pending.pop(rid, ("", None))
        return self.pending.get(rid, ("", None))

    # --- rewards -----------------------------------------------------------------------------------
    def reward_items(self, tuned: list[AdapterChoice]) -> tuple[list[dict[str, Any]], list[tuple[int, AdapterChoice]]]:
        """``score`` items for every answered side, and (side, adapter) for each item.

        A tuned side is scored with its own adapter; the base side with the first tuned adapter
        (the implicit reward needs a policy to compare with the base).
        """
        turn = self.turn
        if turn is None or not tuned or turn.failed:
            return [], []
        items, where = [], []
        for side in sorted(turn.sides):
            adapter = tuned[side - 1] if side >= 1 else tuned[0]
            if self.loaded.get(adapter.adapter_name) is None:
                continue
            items.append({"adapter": adapter.adapter_name, "beta": adapter.beta or 0.1,
                          "ref": {"request": turn.request_id, "side": side}})
            where.append((side, adapter))
        return items, where

    # --- judgements ----------------------------------------------------------------------------------
    def can_judge(self) -> bool:
        turn = self.turn
        return (turn is not None and turn.done and not turn.cancelled and not turn.failed and not turn.judged
                and len(self.histories) >= 2 and 0 in turn.sides and 1 in turn.sides
                and all(str(turn.sides[i].get("text", "")).strip() for i in (0, 1)))

    def judgement(self, side: int, runs_root: Path, model: str) -> Judgement | None:
        """The row for "side ``side`` (0 left, 1 right) is better"; None when both answers are the same."""
        assert self.turn is not None
        chosen = str(self.turn.sides[side].get("text", "")).strip()
        rejected = str(self.turn.sides[1 - side].get("text", "")).strip()
        if chosen == rejected:
            return None
        history = self.histories[side]
        prompt_history = history[:-1] if history and history[-1]["role"] == "assistant" else history
        row = P.judgement_row(prompt_history, chosen, rejected, self.settings.system_prompt)
        return Judgement(row, P.judgements_path(runs_root, model, P.is_conversational(row)))

    def judged(self) -> None:
        """The newest turn's judgement was saved: it cannot be judged again."""
        assert self.turn is not None
        self.turn.judged = True
        self.judged_rows += 1
