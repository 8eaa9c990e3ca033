"""A fake chat worker: the real JSON-lines protocol (``dpo_tui/core/chat_protocol.py``), canned answers.

Run as a script (``python tests/support/fake_chat_worker.py``), through
``ChatClient(command=fake_worker_command())``, so UI tests exercise the real client, pipes, process
group and crash handling without importing torch. It answers every request the real worker
answers, with the same events in the same order:

- ``load_model``: any folder with a ``config.json``; ``load_adapter``: any folder with an
  ``adapter_config.json``, refused (``adapter_mismatch``) when the recorded base's ``config.json``
  differs from the loaded one's, as the real worker refuses it;
- ``generate``: each side's answer is canned from its adapter, the last user message and (when
  sampling) the seed, streamed a word per ``token`` event, sides interleaved like one batch;
  ``max_new_tokens`` counts words, ``cancel`` stops at the next word;
- ``score``: the implicit reward is ``+β`` for an answer scored with the adapter that wrote it,
  ``−β`` otherwise, so a tuned side always out-scores the base side.

:func:`write_fake_assets` makes model and adapter folders the fake accepts (no weights).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from dpo_tui.core import chat_protocol as P
from dpo_tui.worker.chat_io import Channel, Inbox, private_stdout

MEMORY = {"rss": 300 * 2**20}


def fake_worker_command() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve())]


def write_fake_assets(root: Path) -> dict[str, Path]:
    """``base`` and ``other`` (two different model configs) and adapters: ``adapter-a``/``-b``/``-zero``
    for ``base``, ``adapter-other`` for ``other``."""
    folders: dict[str, Path] = {}
    for name, hidden in (("base", 128), ("other", 64)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": hidden}))
        folders[name] = folder
    for name, base in (("adapter-a", "base"), ("adapter-b", "base"), ("adapter-zero", "base"), ("adapter-other", "other")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": str(folders[base])}
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
        folders[name] = folder
    return folders


def answer(adapter: str, prompt: str, settings: P.GenerationSettings) -> list[str]:
    who = "the base model" if adapter == P.BASE else f"adapter {adapter}"
    words = f"This is {who} answering: {prompt}".split(" ")
    if not settings.greedy:
        words.append(f"(seed {settings.seed})")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeWorker:
    def __init__(self, channel: Channel, inbox: Inbox) -> None:
        self.channel, self.inbox = channel, inbox
        self.model: dict[str, Any] | None = None
        self.adapters: dict[str, str] = {}
        self.results: dict[tuple[str, int], str] = {}  # (request, side) -> the adapter that answered

    def _need_model(self) -> dict[str, Any]:
        if self.model is None:
            raise FakeRequestError("no_model", "no base model is loaded")
        return self.model

    def load_model(self, req: dict[str, Any]) -> dict[str, Any]:
        path = Path(str(req.get("model") or ""))
        if not (path / "config.json").is_file():
            raise FakeRequestError("not_found", f"no model folder at {path}")
        self.model = json.loads((path / "config.json").read_text())
        self.model["_path"] = str(path.resolve())
        self.adapters.clear()
        return {"model": str(path.resolve()), "device": "cpu", "dtype": "float32", "parameters": 1000,
                "chat_template": "model", "max_positions": 2048, "fingerprint": {}, "memory": MEMORY}

    def load_adapter(self, req: dict[str, Any]) -> dict[str, Any]:
        model = self._need_model()
        name, path = str(req.get("name")), Path(str(req.get("path")))
        cfg_file = path / "adapter_config.json"
        if not cfg_file.is_file():
            raise FakeRequestError("adapter_load", f"{path} is not a PEFT adapter folder (no adapter_config.json)")
        recorded = str(json.loads(cfg_file.read_text()).get("base_model_name_or_path") or "")
        theirs = Path(recorded) / "config.json"
        if theirs.is_file() and json.loads(theirs.read_text()).get("hidden_size") != model.get("hidden_size"):
            raise FakeRequestError("adapter_mismatch", f"adapter {path.name} was trained on {recorded}, which differs "
                                              f"from the loaded base {Path(model['_path']).name}")
        self.adapters[name] = str(path.resolve())
        return {"name": name, "path": str(path.resolve()), "rank": 8, "mixable": True, "why_not_mixable": "",
                "adapters": sorted(self.adapters), "memory": MEMORY}

    def unload_adapter(self, req: dict[str, Any]) -> dict[str, Any]:
        name = str(req.get("name"))
        if self.adapters.pop(name, None) is None:
            raise FakeRequestError("unknown_adapter", f"no adapter named {name!r} is loaded")
        return {"name": name, "adapters": sorted(self.adapters), "memory": MEMORY}

    def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        self._need_model()
        rid, sides = str(req.get("id")), req.get("sides")
        if not isinstance(sides, list) or not sides:
            raise FakeRequestError("bad_request", "generate needs a non-empty list of sides")
        settings = P.GenerationSettings.from_dict(req.get("settings"))
        if settings.problems():
            raise FakeRequestError("bad_request", "; ".join(settings.problems()))
        words = []
        for i, side in enumerate(sides):
            adapter = side.get("adapter", P.BASE)
            if adapter != P.BASE and adapter not in self.adapters:
                raise FakeRequestError("unknown_adapter", f"side {i}: no adapter named {adapter!r} is loaded")
            problem = P.validate_messages(side.get("messages"))
            if problem:
                raise FakeRequestError("bad_request", f"side {i}: {problem}")
            words.append(answer(adapter, side["messages"][-1]["content"], settings)[: settings.max_new_tokens])
        t0 = time.perf_counter()
        self.channel.emit(P.event(P.STARTED, rid, mode="batched", sides=len(sides), prompt_tokens=[7] * len(sides)))
        cancelled = False
        for n in range(max(len(w) for w in words) + 1):
            cancelled = self.inbox.cancelled(rid)
            for i, side_words in enumerate(words):
                if n < len(side_words) and not cancelled:
                    self.channel.emit(P.event(P.TOKEN, rid, side=i, text=side_words[n], n=n + 1))
                elif n == len(side_words) or (cancelled and n < len(side_words)):
                    shown = side_words[:n]
                    finish = "cancelled" if cancelled and n < len(side_words) else (
                        "length" if len(side_words) == settings.max_new_tokens else "eos")
                    self.results[(rid, i)] = sides[i].get("adapter", P.BASE)
                    self.channel.emit(P.event(P.SIDE_DONE, rid, side=i, adapter=self.results[(rid, i)],
                                              text="".join(shown), tokens=len(shown), finish_reason=finish,
                                              ttft_s=0.01, tokens_per_s=100.0, elapsed_s=time.perf_counter() - t0))
            if cancelled:
                break
        self.inbox.forget(rid)
        return {"mode": "batched", "elapsed_s": time.perf_counter() - t0, "cancelled": cancelled, "memory": MEMORY}

    def score(self, req: dict[str, Any]) -> dict[str, Any]:
        self._need_model()
        out = []
        for i, item in enumerate(req.get("items") or []):
            adapter, beta, ref = item.get("adapter"), float(item.get("beta", 0.1)), item.get("ref") or {}
            if adapter not in self.adapters:
                raise FakeRequestError("unknown_adapter", f"item {i}: the reward needs a loaded tuned adapter, not {adapter!r}")
            wrote = self.results.get((str(ref.get("request")), int(ref.get("side", 0))))
            sign = 1.0 if wrote == adapter else -1.0
            out.append({"reward": sign * beta, "logp_policy": sign, "logp_base": 0.0, "tokens": 5, "beta": beta,
                        "adapter": adapter})
        return {"items": out}


class FakeRequestError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


HANDLERS = {P.LOAD_MODEL: P.MODEL_LOADED, P.LOAD_ADAPTER: P.ADAPTER_LOADED, P.UNLOAD_ADAPTER: P.ADAPTER_UNLOADED,
            P.GENERATE: P.DONE, P.SCORE: P.SCORES}


def main() -> int:
    channel = Channel(private_stdout())
    channel.emit(P.event(P.HELLO, pid=os.getpid(), v=P.PROTOCOL_VERSION))
    inbox = Inbox(sys.stdin, channel)
    inbox.start()
    channel.emit(P.event(P.READY, torch="fake", transformers="fake", peft="fake", cuda=False, cuda_devices=0))
    worker = FakeWorker(channel, inbox)
    while True:
        req = inbox.requests.get()
        if req is None or req.get("op") == P.SHUTDOWN:
            break
        op, rid = req.get("op"), req.get("id")
        try:
            if op == P.MEMORY:
                channel.emit(P.event(P.MEMORY_INFO, rid, **MEMORY))
            elif op in HANDLERS:
                channel.emit(P.event(HANDLERS[op], rid, **getattr(worker, str(op))(req)))
            else:
                raise FakeRequestError("bad_request", f"unknown op {op!r}")
        except FakeRequestError as exc:
            channel.emit(P.error_event(exc.kind, exc.message, rid))
    channel.emit(P.event(P.BYE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
