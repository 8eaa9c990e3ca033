"""The chat worker's I/O: protocol events out (:class:`Channel`), requests in (:class:`Inbox`).

Also the small pieces every other chat worker module shares: :class:`RequestError` (one request
failed, the worker stays up), :func:`is_oom`, and :func:`fault` (fault injection for tests).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Any

from ..core import chat_protocol as P


class RequestError(Exception):
    """An error answering one request; the worker stays up."""

    def __init__(self, kind: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint



class Channel:
    """Writes protocol events to the private stdout handle, one flushed line each."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, obj: dict[str, Any]) -> None:
        line = P.encode(obj)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the client is gone; the inbox sees EOF and the worker exits


class Inbox:
    """Reads requests on a thread so a ``cancel`` lands while a reply is being generated."""

    def __init__(self, stream: Any, channel: Channel) -> None:
        self._stream = stream
        self._channel = channel
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="chat-inbox", daemon=True).start()

    def _run(self) -> None:
        try:
            for raw in self._stream:
                req = P.decode(raw)
                if req is None:
                    if raw.strip():
                        self._channel.emit(P.error_event("bad_request", f"not a JSON object: {raw.strip()[:80]!r}"))
                    continue
                if req.get("op") == P.CANCEL:
                    with self._lock:
                        self._cancelled.add(str(req.get("id")))
                    continue
                self.requests.put(req)
        finally:
            self.closed = True
            self.requests.put(None)

    def cancelled(self, id_: str | None) -> bool:
        if self.closed:
            return True
        with self._lock:
            return id_ in self._cancelled

    def forget(self, id_: str | None) -> None:
        with self._lock:
            self._cancelled.discard(str(id_))


def private_stdout() -> Any:
    """Keep the real stdout for protocol lines; send every stray print (ours or a library's) to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


_FAULTS_FIRED: set[str] = set()


def fault(point: str) -> None:
    """Fault injection for tests, once per worker: ``DPO_TUI_CHAT_FAULT=oom@generate`` or ``crash@generate``."""
    spec = os.environ.get("DPO_TUI_CHAT_FAULT", "")
    if not spec or spec in _FAULTS_FIRED:
        return
    kind, _, where = spec.partition("@")
    if where != point:
        return
    _FAULTS_FIRED.add(spec)
    if kind == "oom":
        raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated by DPO_TUI_CHAT_FAULT)")
    if kind == "crash":
        sys.stderr.write("simulated crash (DPO_TUI_CHAT_FAULT)\n")
        sys.stderr.flush()
        os._exit(70)

