"""A light client for the chat worker: spawn it, send requests, read its events. No torch here.

The worker is a child process with its stdin and stdout as pipes (the JSON-lines protocol of
``chat_protocol``), its stderr appended to a log file, and its own session/process group so that
closing it takes every thread and helper with it. A reader thread turns stdout lines into events on a
queue, so :meth:`ChatClient.recv` can wait with a timeout and never blocks a UI. When stdout closes
without the worker's ``bye``, the client queues one ``crashed`` event with the exit code and the tail
of the log.

The CLI drives it synchronously (:meth:`request`, :meth:`generate`); the UI runs :meth:`recv` in a
thread worker and posts what it gets as messages.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chat_protocol as P
from .errors import UserError

_EOF = object()


class ChatError(Exception):
    """An ``error`` (or ``crashed``) event, raised by the synchronous helpers."""

    def __init__(self, kind: str, message: str, hint: str | None = None, event: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint or P.hint_for(kind)
        self.event = event or {}

    @classmethod
    def from_event(cls, ev: dict[str, Any]) -> ChatError:
        if ev.get("type") == P.CRASHED:
            return cls("crashed", crash_message(ev), P.hint_for("crashed"), ev)
        return cls(str(ev.get("kind") or "internal"), str(ev.get("message") or "chat worker error"), ev.get("hint"), ev)

    def to_user_error(self) -> UserError:
        return UserError(f"Chat: {self.message}", hint=self.hint)


def crash_message(ev: dict[str, Any]) -> str:
    code = ev.get("returncode")
    how = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
    tail = (ev.get("stderr_tail") or "").strip().splitlines()
    last = tail[-1].strip() if tail else ""
    text = f"the chat worker stopped ({how})"
    return f"{text}: {last}" if last else text


def adapter_name(label: str) -> str:
    """A label (a run id such as ``20261126-tiny-b0.1``) made into a legal adapter name."""
    out = "".join(c if c.isalnum() or c in "_-" else "_" for c in label)[:64]
    return out or "adapter"


@dataclass
class AdapterChoice:
    """One adapter a chat side can use: a run's final adapter or one of its checkpoints."""

    label: str
    """Pane title: the run id, with ``@checkpoint-N`` for a checkpoint."""
    path: Path
    run_id: str | None = None
    beta: float | None = None
    """The run's β, for the implicit reward."""
    model: str = ""
    """The base model spec the adapter was trained on (the run's config ``model``)."""
    base_path: str = ""
    """That spec resolved (``sample`` → the bundled folder); what the worker loads."""
    rank: int | None = None
    state: str = ""
    config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The run's config as JSON (what the chat panes' titles name the differences between runs by)."""
    why: str = ""
    """Why these weights were picked for the run (``best by eval loss …``); empty when named explicitly."""

    @property
    def adapter_name(self) -> str:
        return adapter_name(self.label)


def run_adapter(run: Any, checkpoint: str | None = None, fallback_to_checkpoint: bool = True) -> AdapterChoice:
    """The adapter to chat with for ``run`` (a ``core.runs.Run``): its final adapter, ``checkpoint-N``,
    ``best`` (what :func:`~dpo_tui.core.checkpoints.best_checkpoint` picks, with ``why`` saying by what),
    or (unfinished runs) its newest complete checkpoint. Raises :class:`UserError` when there is none."""
    config = run.config()
    base: dict[str, Any] = dict(run_id=run.id, beta=config.beta, model=config.model,
                                base_path=config.resolved_model(),
                                rank=config.lora_rank if config.method != "full" else None,
                                config=config.model_dump(mode="json"))
    if checkpoint == "best":
        picked = _best_adapter(run, base)
        if picked is not None:
            return picked
        checkpoint = None  # nothing scored (no loss logged, weights without an adapter): the plain default
    if checkpoint:
        name = checkpoint if checkpoint.startswith("checkpoint-") else f"checkpoint-{checkpoint}"
        folder = run.checkpoints_dir / name
        if not (folder / "adapter_config.json").is_file():
            steps = ", ".join(str(c.step) for c in run.checkpoints()) or "none"
            raise UserError(f"Run {run.id} has no adapter checkpoint {name}", hint=f"checkpoints: {steps}")
        return AdapterChoice(label=f"{run.id}@{name}", path=folder, **base)
    if (run.adapter_dir / "adapter_config.json").is_file():
        return AdapterChoice(label=run.id, path=run.adapter_dir, **base)
    if (run.model_dir / "config.json").is_file():
        raise UserError(
            f"Run {run.id} is a full fine-tune (model/), not a LoRA adapter",
            hint="side-by-side chat shares one base between LoRA adapters; chat with model/ as its own base",
        )
    ckpt = run.newest_complete_checkpoint() if fallback_to_checkpoint else None
    if ckpt is not None and (ckpt.path / "adapter_config.json").is_file():
        return AdapterChoice(label=f"{run.id}@{ckpt.path.name}", path=ckpt.path, **base)
    raise UserError(f"Run {run.id} has no adapter yet", hint=_no_adapter_hint(run))


def _no_adapter_hint(run: Any) -> str:
    """What to do about a run with no adapter: waiting only helps a run that is still going."""
    from .run_states import ACTIVE_STATES, state_label

    try:
        status = run.status()
    except (UserError, OSError):
        return "pick a run that saved a checkpoint"
    if status.state in ACTIVE_STATES:
        return "wait for its first checkpoint, or pick a finished run"
    label = state_label(status.state, status.kind)
    return f"it ended {label} before its first checkpoint, so there is nothing to chat with: pick another run"


def _best_adapter(run: Any, base: dict[str, Any]) -> AdapterChoice | None:
    from .checkpoints import best_checkpoint

    best = best_checkpoint(run)
    if best is None or best.value is None or not (best.candidate.path / "adapter_config.json").is_file():
        return None
    by = "eval loss" if best.metric == "eval_loss" else "train loss (no eval split)"
    why = f"{best.candidate.name}: best by {by}, {best.value:.4g} at step {best.candidate.step}"
    label = run.id if best.is_final else f"{run.id}@{best.candidate.name}"
    return AdapterChoice(label=label, path=best.candidate.path, why=why, **base)


def adapter_choices(root: Path) -> list[AdapterChoice]:
    """Every adapter in the runs root: each run's final adapter, then its complete checkpoints."""
    from .runs import Run, list_run_dirs

    out: list[AdapterChoice] = []
    for path in list_run_dirs(root):
        run = Run(path)
        try:
            config = run.config()
            state = run.status().state
        except UserError:
            continue
        if config.method == "full":
            continue
        base: dict[str, Any] = dict(run_id=run.id, beta=config.beta, model=config.model,
                                    base_path=config.resolved_model(), rank=config.lora_rank, state=state,
                                    config=config.model_dump(mode="json"))
        if (run.adapter_dir / "adapter_config.json").is_file():
            out.append(AdapterChoice(label=run.id, path=run.adapter_dir, **base))
        for ckpt in reversed(run.checkpoints()):
            if ckpt.complete and (ckpt.path / "adapter_config.json").is_file():
                out.append(AdapterChoice(label=f"{run.id}@{ckpt.path.name}", path=ckpt.path, **base))
    return out


def default_log_path() -> Path:
    from .paths import data_home

    return data_home() / "logs" / "chat-worker.log"


class ChatClient:
    """One chat worker process. Use as a context manager, or call :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        log_path: Path | str | None = None,
        python: str | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``command`` replaces ``python -m dpo_tui.worker.chat`` (tests run a fake worker with it);
        ``extra_args`` are appended either way."""
        self.log_path = Path(log_path) if log_path else None
        self.python = python or sys.executable
        self.env = env
        self.extra_args = list(extra_args or [])
        self.command = list(command) if command else [self.python, "-m", "dpo_tui.worker.chat"]
        self.proc: subprocess.Popen[bytes] | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._log: Any = None
        self._closing = False
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self.hello: dict[str, Any] | None = None
        self.ready: dict[str, Any] | None = None
        self.exited: dict[str, Any] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> ChatClient:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.log_path is None:
            try:
                self.log_path = default_log_path()
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                self.log_path = Path(tempfile.gettempdir()) / f"dpo-tui-chat-{os.getpid()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self._log.write(f"\n--- chat worker started {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        self._log.flush()
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._closing = False
        self.exited = None
        self._events = queue.Queue()
        self.proc = subprocess.Popen(
            [*self.command, *self.extra_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
            bufsize=0,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), name="chat-client-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        saw_bye = False
        assert proc.stdout is not None
        for raw in proc.stdout:
            ev = P.decode(raw)
            if ev is None:
                continue
            kind = ev.get("type")
            if kind == P.HELLO:
                self.hello = ev
            elif kind == P.READY:
                self.ready = ev
            elif kind == P.BYE:
                saw_bye = True
            self._events.put(ev)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        if not saw_bye and not self._closing:
            ev = P.event(P.CRASHED, returncode=code, stderr_tail=self.log_tail(), log=str(self.log_path))
            self.exited = ev
            self._events.put(ev)
        self._events.put(_EOF)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def close(self, timeout: float = 5.0) -> int | None:
        """Ask the worker to exit, then SIGTERM and SIGKILL its process group if it lingers."""
        with self._close_lock:
            return self._close(timeout)

    def _close(self, timeout: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        self._closing = True
        try:
            if proc.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    self._write(P.encode({"op": P.SHUTDOWN}))
                with contextlib.suppress(OSError, ValueError):
                    assert proc.stdin is not None
                    proc.stdin.close()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        self._signal(signal.SIGKILL)
                        proc.wait(timeout=timeout)
        finally:
            self._signal(signal.SIGKILL, only_group=True)  # stray grandchildren, if any
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.close()
            if self._reader is not None:
                self._reader.join(timeout=2)
            if self._log is not None:
                with contextlib.suppress(Exception):
                    self._log.close()
                self._log = None
        return proc.returncode

    def kill(self) -> None:
        """Kill the worker's process group now (what a crash looks like; used by tests)."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int, only_group: bool = False) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            if not only_group:
                with contextlib.suppress(ProcessLookupError, OSError):
                    proc.send_signal(sig)

    def restart(self) -> ChatClient:
        self.close()
        self.proc = None
        return self.start()

    def __enter__(self) -> ChatClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 8192))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        text = text.rsplit("--- chat worker started", 1)[-1]
        return "\n".join(text.strip().splitlines()[1:][-lines:])

    # --- sending and receiving ------------------------------------------------------------------------------
    def new_id(self, prefix: str = "r") -> str:
        return f"{prefix}{next(self._ids)}"

    def _write(self, line: str) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise BrokenPipeError("the chat worker is not running")
        with self._send_lock:
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()

    def send(self, request: dict[str, Any]) -> str:
        """Send one request (an ``id`` is added when missing); returns its id."""
        request = dict(request)
        request.setdefault("id", self.new_id())
        try:
            self._write(P.encode(request))
        except (BrokenPipeError, OSError, ValueError):
            # the reader thread reports the crash; make sure a waiting caller sees something
            if self.exited is None and not self._closing:
                self._events.put(P.event(P.CRASHED, returncode=self.proc.poll() if self.proc else None,
                                         stderr_tail=self.log_tail(), log=str(self.log_path)))
        return str(request["id"])

    def cancel(self, id_: str) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self._write(P.encode({"op": P.CANCEL, "id": id_}))

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or ``None`` on timeout or after the worker's output ended."""
        try:
            ev = self._events.get(timeout=timeout) if timeout is None or timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return None
        if ev is _EOF:
            self._events.put(_EOF)  # stay at end of stream
            return None
        return ev

    def events_for(
        self, id_: str, timeout: float | None = None, on_other: Callable[[dict[str, Any]], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Events answering request ``id_`` until its terminal event (included), or a crash."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                raise ChatError("internal", f"no answer from the chat worker within {timeout:.0f} s", "see the worker log")
            ev = self.recv(timeout=min(left, 0.5) if left is not None else 0.5)
            if ev is None:
                if not self.alive() and self._events.empty():
                    crashed = self.exited or P.event(P.CRASHED, returncode=self.proc.poll() if self.proc else None,
                                                     stderr_tail=self.log_tail(), log=str(self.log_path))
                    yield crashed
                    return
                continue
            if ev.get("type") == P.CRASHED:
                yield ev
                return
            if ev.get("id") == id_:
                yield ev
                if ev.get("type") in P.TERMINAL_FOR_REQUEST:
                    return
            elif on_other is not None:
                on_other(ev)

    def request(self, request: dict[str, Any], timeout: float | None = 600.0,
                on_other: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Send and wait for the terminal event; raises :class:`ChatError` on ``error``/``crashed``."""
        rid = self.send(request)
        last: dict[str, Any] = {}
        for ev in self.events_for(rid, timeout, on_other):
            if ev.get("type") in (P.ERROR, P.CRASHED):
                raise ChatError.from_event(ev)
            if ev.get("type") == P.WARNING and on_other is not None:
                on_other(ev)
            last = ev
        return last

    # --- conveniences --------------------------------------------------------------------------------------
    def load_model(self, model: str, device: str = "auto", dtype: str = "auto", timeout: float | None = 600.0,
                   on_other: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        return self.request({"op": P.LOAD_MODEL, "id": self.new_id("m"), "model": model, "device": device, "dtype": dtype},
                            timeout, on_other)

    def load_adapter(self, name: str, path: str | Path, timeout: float | None = 300.0) -> dict[str, Any]:
        return self.request({"op": P.LOAD_ADAPTER, "id": self.new_id("a"), "name": name, "path": str(path)}, timeout)

    def unload_adapter(self, name: str, timeout: float | None = 60.0) -> dict[str, Any]:
        return self.request({"op": P.UNLOAD_ADAPTER, "id": self.new_id("u"), "name": name}, timeout)

    def memory(self, timeout: float | None = 30.0) -> dict[str, Any]:
        return self.request({"op": P.MEMORY, "id": self.new_id("x")}, timeout)

    def score(self, items: list[dict[str, Any]], timeout: float | None = 300.0) -> list[dict[str, Any]]:
        return list(self.request({"op": P.SCORE, "id": self.new_id("s"), "items": items}, timeout).get("items", []))

    def generate(
        self,
        sides: list[dict[str, Any]],
        settings: P.GenerationSettings | dict[str, Any] | None = None,
        mode: str = "auto",
        timeout: float | None = 600.0,
    ) -> Iterator[dict[str, Any]]:
        """Stream the events of one reply (``started``, ``token``…, ``side_done``…, then ``done``)."""
        rid = self.new_id("g")
        self.send(P.generate_request(rid, sides, settings, mode))
        yield from self.events_for(rid, timeout)

    def reply(self, sides: list[dict[str, Any]], settings: P.GenerationSettings | dict[str, Any] | None = None,
              mode: str = "auto", timeout: float | None = 600.0) -> dict[str, Any]:
        """Generate and collect: ``{"id", "sides": [side_done…], "done": done, "started": started, "warnings": [...]}``."""
        out: dict[str, Any] = {"sides": [None] * len(sides), "warnings": []}
        for ev in self.generate(sides, settings, mode, timeout):
            kind = ev.get("type")
            out["id"] = ev.get("id", out.get("id"))
            if kind in (P.ERROR, P.CRASHED):
                raise ChatError.from_event(ev)
            if kind == P.STARTED:
                out["started"] = ev
            elif kind == P.SIDE_DONE:
                out["sides"][int(ev["side"])] = ev
            elif kind == P.WARNING:
                out["warnings"].append(ev)
            elif kind == P.DONE:
                out["done"] = ev
        return out
