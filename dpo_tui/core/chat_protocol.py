"""The chat worker's wire format: JSON lines over the worker's stdin and stdout.

One JSON object per line, UTF-8, ``\\n``-terminated. The worker (``python -m dpo_tui.worker.chat``)
reads *requests* (``op``) on stdin and writes *events* (``type``) on stdout; stdout carries nothing
else. Both sides import this module, so the names are defined once. Pure: stdlib only.

Requests (client → worker); ``id`` is chosen by the client and echoed in every event answering it::

    {"op": "load_model",   "id": "m1", "model": "/path/to/base", "device": "auto", "dtype": "auto"}
    {"op": "load_adapter", "id": "a1", "name": "tuned", "path": "/runs/X/adapter"}
    {"op": "unload_adapter", "id": "a2", "name": "tuned"}
    {"op": "generate", "id": "g1", "mode": "auto",
     "sides": [{"adapter": "__base__", "messages": [{"role": "user", "content": "Hi"}]},
               {"adapter": "tuned",    "messages": [{"role": "user", "content": "Hi"}]}],
     "settings": {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.95, "seed": 0, "greedy": false,
                  "system_prompt": "", "stop": []}}
    {"op": "score", "id": "s1", "items": [{"adapter": "tuned", "beta": 0.1, "ref": {"request": "g1", "side": 0}},
                                          {"adapter": "tuned", "beta": 0.1, "messages": [...], "answer": "..."}]}
    {"op": "cancel", "id": "g1"}          # stop generation g1 at the next token
    {"op": "memory", "id": "x1"}
    {"op": "shutdown"}

Events (worker → client)::

    hello          once at start: pid, protocol version (before the ML stack is imported)
    ready          the ML stack is imported: library versions, devices
    model_loaded   id, model, device, dtype, parameters, chat_template ("model" | "plain"), memory
    adapter_loaded id, name, path, rank, memory;  adapter_unloaded id, name
    started        id, mode ("batched" | "sequential"), sides, prompt_tokens [per side]
    token          id, side, text (the new text of that side), n (tokens so far)
    side_done      id, side, text, tokens, finish_reason ("eos" | "stop" | "length" | "cancelled"),
                   ttft_s, tokens_per_s, elapsed_s
    done           id, mode, elapsed_s, cancelled, memory
    scores         id, items [{reward, logp_policy, logp_base, tokens, beta, adapter}]
    memory         id, + the memory fields
    warning        id?, kind, message
    error          id?, kind (see ERROR_KINDS), message, hint
    bye            the worker is exiting after ``shutdown`` (or stdin closed)

The client adds one event of its own, ``crashed`` (returncode, stderr_tail, log), when the worker's
stdout closes without ``bye``.

``"__base__"`` as an adapter name means the base model with every adapter switched off.
Memory fields: ``rss`` (bytes, the worker process), and on CUDA ``cuda_allocated``, ``cuda_reserved``,
``cuda_peak`` (bytes, peak since the request began) and ``cuda_device``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .fsutil import JSON_ERRORS

PROTOCOL_VERSION = 1
BASE = "__base__"
"""Adapter name for the base model with adapters off (PEFT's mixed-batch name)."""

# request ops
LOAD_MODEL = "load_model"
LOAD_ADAPTER = "load_adapter"
UNLOAD_ADAPTER = "unload_adapter"
GENERATE = "generate"
SCORE = "score"
CANCEL = "cancel"
MEMORY = "memory"
SHUTDOWN = "shutdown"
OPS = frozenset({LOAD_MODEL, LOAD_ADAPTER, UNLOAD_ADAPTER, GENERATE, SCORE, CANCEL, MEMORY, SHUTDOWN})

# event types
HELLO = "hello"
READY = "ready"
MODEL_LOADED = "model_loaded"
ADAPTER_LOADED = "adapter_loaded"
ADAPTER_UNLOADED = "adapter_unloaded"
STARTED = "started"
TOKEN = "token"
SIDE_DONE = "side_done"
DONE = "done"
SCORES = "scores"
MEMORY_INFO = "memory"
WARNING = "warning"
ERROR = "error"
BYE = "bye"
CRASHED = "crashed"  # synthesised by the client, never written by the worker

# Events that end the request named by their id.
TERMINAL_FOR_REQUEST = frozenset({MODEL_LOADED, ADAPTER_LOADED, ADAPTER_UNLOADED, DONE, SCORES, MEMORY_INFO, ERROR})

# error kinds, each with the hint an operator gets when the worker gives none
ERROR_KINDS: dict[str, str] = {
    "bad_request": "a bug in the caller: the request did not match the protocol",
    "no_model": "load a base model first",
    "template": "this model's chat template does not take this conversation (Gemma, for one, has no system role): "
                "drop the system prompt, or start fresh",
    "model_load": "check the model folder (config.json, weights, tokenizer) or pick another model",
    "not_found": "the path does not exist on this machine",
    "adapter_load": "the adapter folder needs adapter_config.json and adapter weights",
    "adapter_mismatch": "this adapter was trained on a different base model; chat with it on its own base",
    "unknown_adapter": "load the adapter before generating with it",
    "oom": "out of GPU memory: lower max new tokens, use fewer sides, or free the GPU (a running trainer?)",
    "generation": "generation failed; see the worker log",
    "internal": "a bug in the chat worker; see the worker log",
    "crashed": "the chat worker died; restart it (the log names the reason)",
}


def hint_for(kind: str) -> str:
    return ERROR_KINDS.get(kind, ERROR_KINDS["internal"])


# --- framing --------------------------------------------------------------------------------------------
def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def encode(obj: dict[str, Any]) -> str:
    """One protocol line (with its newline). NaN/Inf become ``null``, so every line is strict JSON."""
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(obj), ensure_ascii=False, separators=(",", ":"))
    return text + "\n"


def decode(line: str | bytes) -> dict[str, Any] | None:
    """Parse one line; ``None`` for blank lines, non-objects and garbage (a stray print on stdout)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line or not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except JSON_ERRORS:
        return None
    return obj if isinstance(obj, dict) else None


def event(type_: str, id_: str | None = None, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": type_}
    if id_ is not None:
        obj["id"] = id_
    obj.update(fields)
    return obj


def error_event(kind: str, message: str, id_: str | None = None, hint: str | None = None) -> dict[str, Any]:
    return event(ERROR, id_, kind=kind, message=message, hint=hint or hint_for(kind))


# --- generation settings --------------------------------------------------------------------------------
@dataclass
class GenerationSettings:
    """What one reply is generated with; identical for every side of a request."""

    max_new_tokens: int = 128
    """Upper bound on answer tokens per side."""
    temperature: float = 0.7
    """Sampling temperature (> 0); ignored when greedy."""
    top_p: float = 0.95
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p, in (0, 1]."""
    seed: int = 0
    """Sampling seed. Each side draws from its own generator seeded with it (or with the side's own ``seed``)."""
    greedy: bool = False
    """Always take the most likely token (deterministic; temperature and top_p are ignored)."""
    system_prompt: str = ""
    """Prepended as a system message when not empty."""
    stop: list[str] = field(default_factory=list)
    """Stop strings: a side ends when its answer contains one (the stop string is not part of the answer)."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence up to max_new_tokens (for benchmarks: equal-length replies)."""

    def problems(self) -> list[str]:
        out = []
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 65536:
            out.append("max_new_tokens must be an integer in 1..65536")
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0 or not math.isfinite(self.temperature):
            out.append("temperature must be > 0 (use greedy for deterministic answers)")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            out.append("top_p must be in (0, 1]")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            out.append("seed must be an integer")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            out.append("stop must be a list of non-empty strings")
        if not isinstance(self.system_prompt, str):
            out.append("system_prompt must be a string")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationSettings:
        data = dict(data or {})
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


# --- requests -------------------------------------------------------------------------------------------
def side(adapter: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {"adapter": adapter, "messages": messages}


def generate_request(
    id_: str, sides: list[dict[str, Any]], settings: GenerationSettings | dict[str, Any] | None = None, mode: str = "auto"
) -> dict[str, Any]:
    if isinstance(settings, GenerationSettings):
        settings = settings.to_dict()
    return {"op": GENERATE, "id": id_, "sides": sides, "settings": settings or {}, "mode": mode}


def validate_messages(messages: Any) -> str | None:
    """``None`` when ``messages`` is a non-empty list of {role, content} ending with a user turn."""
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return "each message needs a string role and content"
        if m["role"] not in ("system", "user", "assistant"):
            return f"unknown role {m['role']!r} (system, user or assistant)"
    if messages[-1]["role"] != "user":
        return "the last message must be the user's"
    return None


# --- judgements: turning a side-by-side reply into preference data ----------------------------------------
JUDGEMENTS_DIR = "judgements"


def model_slug(model: str) -> str:
    """A file-name-safe short name for a model spec (``sample`` → ``tiny-chat``)."""
    if model == "sample":
        return "tiny-chat"
    base = model.rstrip("/\\")
    name = Path(base).name if Path(base).exists() or "/" not in base else base.split("/")[-1]
    out = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (out or "model")[:48].strip("-") or "model"


def judgements_path(runs_root: Path, model: str, conversational: bool = False) -> Path:
    """Default preference file for judgements made while chatting with ``model``.

    Single-turn rows (standard form) go to ``<slug>.jsonl``; multi-turn rows (conversational form) to
    ``<slug>-conversational.jsonl``, so every file holds one format and passes the data check as it is.
    """
    suffix = "-conversational" if conversational else ""
    return Path(runs_root) / JUDGEMENTS_DIR / f"{model_slug(model)}{suffix}.jsonl"


def is_conversational(row: dict[str, Any]) -> bool:
    return isinstance(row.get("prompt"), list)


def judgement_row(history: list[dict[str, str]], chosen: str, rejected: str, system_prompt: str = "") -> dict[str, Any]:
    """One preference row in a format the data check and the trainer accept.

    ``history`` is the conversation up to and including the last user turn (of the chosen side).
    A single-turn exchange without a system prompt gives the standard form
    ``{"prompt", "chosen", "rejected"}`` (strings); anything longer gives TRL's conversational form
    (``prompt`` a message list, ``chosen``/``rejected`` one assistant message each).

    The standard prompt ends with a newline: the trainer joins prompt and completion as they are, and
    the answers were stripped, so without it the pair would train on "Hi?Hello" (the data check's
    ``no-separator``).
    """
    msgs = [m for m in history if m.get("role") != "system"]
    system = system_prompt or next((m["content"] for m in history if m.get("role") == "system"), "")
    if len(msgs) == 1 and not system:
        text = msgs[0]["content"].rstrip() + "\n"
        return {"prompt": text, "chosen": chosen.strip(), "rejected": rejected.strip()}
    prompt = ([{"role": "system", "content": system}] if system else []) + [
        {"role": m["role"], "content": m["content"]} for m in msgs
    ]
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def append_judgement(path: Path, row: dict[str, Any]) -> None:
    """Append one row (one line) and fsync, so a crash never leaves a torn line behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, ensure_ascii=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
