"""One side of a reply (:class:`Side`) and how its token ids become streamed text (:class:`Streamer`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core import chat_protocol as P


@dataclass
class Side:
    index: int
    adapter: str
    prompt: list[int]
    max_new: int
    ids: list[int] = field(default_factory=list)
    answer_ids: list[int] = field(default_factory=list)  # ids incl. EOS, for scoring
    text: str = ""
    emitted: int = 0
    finish: str | None = None
    t_first: float | None = None
    t_last: float | None = None
    t_done: float | None = None
    generator: Any = None


class Streamer:
    """Turns a side's token ids into streamed text: UTF-8-safe, holding back a possible stop-string start."""

    def __init__(self, tokenizer: Any, eos_ids: set[int], stops: list[str], ignore_eos: bool, emit: Any, req_id: str,
                 stream: bool = True) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ignore_eos = ignore_eos
        self.emit = emit
        self.req_id = req_id
        # Without a reader of token deltas and without stop strings to look for, the text is only needed once,
        # at the end: decoding the whole answer after every token is the main per-row cost of a big batch.
        self.decode_at_end = not stream and not self.stops

    def push(self, side: Side, token: int, now: float) -> None:
        if side.t_first is None:
            side.t_first = now
        side.t_last = now
        side.answer_ids.append(token)
        if token in self.eos_ids and not self.ignore_eos:
            text = side.text if side.ids else ""
            if self.decode_at_end and side.ids:
                text = self.tokenizer.decode(side.ids, skip_special_tokens=True)
            self._finish(side, "eos", text, now)
            return
        side.ids.append(token)
        if self.decode_at_end:
            if len(side.answer_ids) >= side.max_new:
                self._finish(side, "length", self.tokenizer.decode(side.ids, skip_special_tokens=True), now)
            return
        text = self.tokenizer.decode(side.ids, skip_special_tokens=True)
        stop_at = self._find_stop(text, side.emitted)
        if stop_at is not None:
            self._finish(side, "stop", text[:stop_at], now)
            return
        if len(side.answer_ids) >= side.max_new:
            self._finish(side, "length", text, now)
            return
        if text.endswith("\ufffd"):
            side.text = text
            return  # a multi-byte character is incomplete: wait for its next token
        side.text = text
        safe = len(text) - self.hold
        if safe > side.emitted:
            self._send(side, text[side.emitted : safe])
            side.emitted = safe

    def _find_stop(self, text: str, emitted: int) -> int | None:
        if not self.stops:
            return None
        start = max(0, emitted - self.hold)
        found = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(found) if found else None

    def _finish(self, side: Side, reason: str, text: str, now: float) -> None:
        text = text.rstrip("\ufffd") if reason != "length" else text
        side.text = text
        if len(text) > side.emitted:
            self._send(side, text[side.emitted :])
            side.emitted = len(text)
        side.finish = reason
        side.t_done = now

    def _send(self, side: Side, delta: str) -> None:
        if self.decode_at_end:
            return
        self.emit(P.event(P.TOKEN, self.req_id, side=side.index, text=delta, n=len(side.answer_ids)))

