"""Many answers in few batched passes: the chat engine driven in-process, for evaluation and pair making.

Evaluation asks, for every held-out prompt, one greedy answer and N sampled answers from the base and
from each tuned adapter; pair making asks ``n`` sampled candidates per prompt. :class:`BatchGenerator`
loads the base once (:class:`dpo_tui.worker.chat_engine.Engine`), loads adapters by name, and answers a
list of :class:`GenItem` in batches of ``batch_size`` rows. One batch may mix adapters: each row goes
through its own LoRA (the engine's per-row mixing), so base + 3 adapters cost one decode loop instead
of four. Each row has its own seed, so a sampled answer is the same whether it was made alone or in a
batch of any size or order.

The engine's protocol events (token deltas, side results) are collected, not printed; errors come back
as :class:`dpo_tui.worker.chat_io.RequestError` with the engine's kinds (``oom``, ``template``…).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..core import chat_protocol as P
from .chat_engine import Engine
from .chat_io import RequestError


@dataclass(frozen=True)
class GenItem:
    """One answer to make: a conversation ending in a user turn, through ``adapter`` (``P.BASE`` for the base)."""

    messages: list[dict[str, str]]
    adapter: str = P.BASE
    seed: int = 0
    key: Any = None
    """Opaque: handed back on the result so the caller can file it."""


@dataclass
class GenResult:
    item: GenItem
    text: str
    tokens: int
    finish_reason: str
    """``eos`` (the model ended it), ``stop`` (a stop string), ``length`` (hit max_new_tokens), ``cancelled``."""


class _Collector:
    """Stands in for the chat worker's stdout: keeps the side results and warnings of one request."""

    def __init__(self) -> None:
        self.sides: dict[int, dict[str, Any]] = {}
        self.warnings: list[str] = []

    def emit(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == P.SIDE_DONE:
            self.sides[int(obj["side"])] = obj
        elif kind == P.WARNING:
            self.warnings.append(str(obj.get("message", "")))


class _NeverCancelled:
    """The engine polls its inbox for cancels; a batch job stops between batches instead."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def cancelled(self, _id: str | None) -> bool:
        return self._stop.is_set()

    def forget(self, _id: str | None) -> None:
        return None


@dataclass
class BatchGenerator:
    """One base model (+ adapters) answering :class:`GenItem` lists in batches."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    """Set it (from a signal handler) to end the current batch early; its unfinished rows read ``cancelled``."""

    def __post_init__(self) -> None:
        self._collector = _Collector()
        self.engine = Engine(self._collector, _NeverCancelled(self.stop))  # type: ignore[arg-type]
        self.info = self.engine.load_model({"model": self.model, "device": self.device, "dtype": self.dtype,
                                            "trust_remote_code": self.trust_remote_code})
        self._n = 0

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def load_adapter(self, name: str, path: str) -> dict[str, Any]:
        return self.engine.load_adapter({"name": name, "path": path})

    def generate(self, items: list[GenItem], settings: P.GenerationSettings, batch_size: int = 16,
                 mode: str = "auto") -> list[GenResult]:
        """Answers in the order of ``items``; ``mode='sequential'`` answers one row at a time (for benchmarks)."""
        out: list[GenResult] = []
        step = 1 if mode == "sequential" else max(1, batch_size)
        for start in range(0, len(items), step):
            if self.stop.is_set():
                break
            out.extend(self._batch(items[start : start + step], settings))
        return out

    def _batch(self, items: list[GenItem], settings: P.GenerationSettings) -> list[GenResult]:
        self._n += 1
        rid = f"batch-{self._n}"
        self._collector.sides.clear()
        sides = [{"adapter": it.adapter, "messages": it.messages, "seed": int(it.seed)} for it in items]
        self.engine.generate({"id": rid, "sides": sides, "settings": settings.to_dict(), "mode": "auto", "stream": False})
        self.engine.results.clear()  # answers are kept by the caller; the engine's score-by-reference is unused here
        results = []
        for i, it in enumerate(items):
            side = self._collector.sides.get(i)
            if side is None:
                raise RequestError("generation", f"{rid}: side {i} never finished")
            results.append(GenResult(it, str(side.get("text", "")), int(side.get("tokens", 0)),
                                     str(side.get("finish_reason") or "")))
        return results

    def answer_logps(self, messages: list[dict[str, str]], answer: str, adapter: str,
                     system_prompt: str = "") -> tuple[float, float]:
        """Summed log-probabilities of ``answer`` under ``adapter`` and under the base, in one forward pass.

        The adapter and its reference share one model (adapter on/off), so this is the implicit DPO reward
        divided by β: ``reward = β · (policy − base)``.
        """
        reply = self.engine.score({"items": [{"adapter": adapter, "messages": messages, "answer": answer,
                                              "system_prompt": system_prompt}]})
        item = reply["items"][0]
        return float(item["logp_policy"]), float(item["logp_base"])

    def warnings(self) -> list[str]:
        out, self._collector.warnings = self._collector.warnings, []
        return out

    def close(self) -> None:
        self.engine.unload_model()
