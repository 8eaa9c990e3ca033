"""The chat worker: one base model in memory, LoRA adapters by name, side-by-side streaming replies.

Run as ``python -m dpo_tui.worker.chat``; it speaks the JSON-lines protocol of
``dpo_tui.core.chat_protocol`` (requests on stdin, events on stdout; its stderr is a log). The UI
and ``dpo-tui chat`` start it through ``dpo_tui.core.chat_client.ChatClient``.

How one request for N sides becomes one batched generation
-----------------------------------------------------------
Every side is a row of one left-padded batch with a shared KV cache; a manual decode loop picks
each row's next token (greedy, or its own seeded sampler), streams that side's new text, and drops
a row from the batch (and from the cache) when the side ends at EOS, a stop string or its token
limit. Rows may use different adapters: PEFT loads the adapters into the one base model, and for
the duration of a request each LoRA ``Linear`` computes its low-rank update per row (a broadcast
matmul for one adapter, batched matmuls for several, a zero row for ``"__base__"``). That costs
about what a single tuned reply costs, and holds one copy of the base weights. Adapters whose
layers this per-row path does not cover (DoRA, LoRA on embeddings, modules_to_save, quantised
bases, non-LoRA PEFT types) are answered the plain PEFT way, one side after another
(``mode: "sequential"``), and the ``started`` event says so.

Nothing heavy is imported at module import: torch, transformers and peft load inside ``main()``
after the worker has said ``hello``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import queue
import re
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import chat_protocol as P

# Used when a tokenizer has no chat template (the UI and CLI say so).
PLAIN_TEMPLATE_STOPS = ["\nUser:", "\nSystem:"]
FINGERPRINT_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
)
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEEP_RESULTS = 256  # (request, side) answers kept for ``score`` by reference
SMALL_MODEL_PARAMS = 50_000_000  # below this, CPU generation runs on one thread


class RequestError(Exception):
    """An error answering one request; the worker stays up."""

    def __init__(self, kind: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


# --- I/O -------------------------------------------------------------------------------------------------
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


# --- one side of a reply ----------------------------------------------------------------------------------
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

    def __init__(self, tokenizer: Any, eos_ids: set[int], stops: list[str], ignore_eos: bool, emit: Any, req_id: str) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ignore_eos = ignore_eos
        self.emit = emit
        self.req_id = req_id

    def push(self, side: Side, token: int, now: float) -> None:
        if side.t_first is None:
            side.t_first = now
        side.t_last = now
        side.answer_ids.append(token)
        if token in self.eos_ids and not self.ignore_eos:
            self._finish(side, "eos", side.text if side.ids else "", now)
            return
        side.ids.append(token)
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
        self.emit(P.event(P.TOKEN, self.req_id, side=side.index, text=delta, n=len(side.answer_ids)))


# --- the engine -------------------------------------------------------------------------------------------
class Engine:
    def __init__(self, channel: Channel, inbox: Inbox) -> None:
        import torch

        self.torch = torch
        self.channel = channel
        self.inbox = inbox
        self.model: Any = None  # the transformers model (LoRA layers are injected into it in place)
        self.peft: Any = None  # the PeftModel wrapping it once an adapter is loaded
        self.tokenizer: Any = None
        self.model_path = ""
        self.device: Any = None
        self.dtype: Any = None
        self.chat_template = "model"
        self.eos_ids: set[int] = set()
        self.pad_id = 0
        self.max_positions: int | None = None
        self.adapters: dict[str, dict[str, Any]] = {}
        self.results: OrderedDict[tuple[str, int], tuple[list[int], list[int], str]] = OrderedDict()
        self._cache_kw = "past_key_values"
        self._logits_to_keep = False
        self._kv_peak = 0

    # --- memory ---------------------------------------------------------------------------------------
    def memory(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            import psutil

            out["rss"] = psutil.Process().memory_info().rss
        except Exception:  # noqa: BLE001 - memory is informative only
            pass
        torch = self.torch
        if self.model is not None:
            out["weights"] = sum(t.nbytes for t in self.model.parameters()) + sum(t.nbytes for t in self.model.buffers())
        if self.device is not None and self.device.type == "cuda":
            idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
            out["cuda_device"] = idx
            out["cuda_name"] = torch.cuda.get_device_name(idx)
            out["cuda_allocated"] = torch.cuda.memory_allocated(idx)
            out["cuda_reserved"] = torch.cuda.memory_reserved(idx)
            out["cuda_peak"] = torch.cuda.max_memory_allocated(idx)
            with contextlib.suppress(Exception):
                free, total = torch.cuda.mem_get_info(idx)
                out["cuda_free"], out["cuda_total"] = free, total
        return out

    def _reset_peak(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self.device)

    # --- loading --------------------------------------------------------------------------------------
    def load_model(self, req: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        spec = req.get("model")
        if not isinstance(spec, str) or not spec:
            raise RequestError("bad_request", "load_model needs a model path")
        path = Path(spec).expanduser()
        if not path.exists() and (spec.startswith(("/", ".", "~")) or spec.count("/") != 1):
            raise RequestError("not_found", f"no model folder at {spec}")
        self.unload_model()
        device = self._pick_device(str(req.get("device") or "auto"))
        dtype = self._pick_dtype(str(req.get("dtype") or "auto"), device)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        trust = bool(req.get("trust_remote_code", False))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path) if path.exists() else spec, trust_remote_code=trust)
        except Exception as exc:  # noqa: BLE001 - reported to the operator
            raise RequestError("model_load", f"cannot load the tokenizer of {spec}: {_one_line(exc)}") from exc
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path) if path.exists() else spec, dtype=dtype, trust_remote_code=trust)
            model.to(device)
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                raise RequestError("oom", f"out of memory loading {spec} on {device}") from exc
            raise RequestError("model_load", f"cannot load {spec}: {_one_line(exc)}") from exc
        model.eval()
        n_params = sum(p.numel() for p in model.parameters())
        if device.type == "cpu" and n_params < SMALL_MODEL_PARAMS and not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(1)  # tiny matmuls: thread hand-offs cost more than they save (measured ~4x)
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype
        self.model_path = str(path.resolve()) if path.exists() else spec
        self.chat_template = "model" if getattr(tokenizer, "chat_template", None) else "plain"
        eos: set[int] = set()
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        for value in (gen_eos, tokenizer.eos_token_id):
            if isinstance(value, int):
                eos.add(value)
            elif isinstance(value, (list, tuple)):
                eos.update(v for v in value if isinstance(v, int))
        self.eos_ids = eos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_positions = getattr(text_config, "max_position_embeddings", None)
        import inspect

        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        fields: dict[str, Any] = {
            "model": self.model_path,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "parameters": n_params,
            "chat_template": self.chat_template,
            "max_positions": self.max_positions,
            "fingerprint": _fingerprint(model.config.to_dict()),
            "memory": self.memory(),
        }
        if self.chat_template == "plain":
            self.channel.emit(
                P.event(
                    P.WARNING,
                    req.get("id"),
                    kind="no_chat_template",
                    message=(
                        f"{Path(self.model_path).name} has no chat template: using a plain 'User: … / Assistant:' "
                        "template, so answers may be worse than with the model's own format"
                    ),
                )
            )
        return fields

    def unload_model(self) -> None:
        self.model = self.peft = self.tokenizer = None
        self.adapters.clear()
        self.results.clear()
        gc.collect()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    def _pick_device(self, spec: str) -> Any:
        torch = self.torch
        if spec == "auto":
            return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        try:
            device = torch.device(spec)
        except (RuntimeError, ValueError) as exc:
            raise RequestError("bad_request", f"unknown device {spec!r}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RequestError("model_load", f"device {spec} asked for, but no CUDA GPU is visible")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device

    def _pick_dtype(self, spec: str, device: Any) -> Any:
        torch = self.torch
        table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                 "fp32": torch.float32, "float32": torch.float32}
        if spec in table:
            return table[spec]
        if spec != "auto":
            raise RequestError("bad_request", f"unknown dtype {spec!r} (auto, bf16, fp16, fp32)")
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def _need_model(self) -> None:
        if self.model is None:
            raise RequestError("no_model", "no base model is loaded")

    def load_adapter(self, req: dict[str, Any]) -> dict[str, Any]:
        self._need_model()
        name, spec = req.get("name"), req.get("path")
        if not isinstance(name, str) or not ADAPTER_NAME.match(name) or name == P.BASE:
            raise RequestError("bad_request", f"adapter name {name!r}: use 1-64 letters, digits, '_' or '-'")
        if not isinstance(spec, str) or not spec:
            raise RequestError("bad_request", "load_adapter needs a path")
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise RequestError("not_found", f"no adapter folder at {spec}")
        cfg_file = path / "adapter_config.json"
        if not cfg_file.is_file():
            hint = "a full fine-tune has no adapter; chat with it as its own base" if (path / "config.json").exists() else None
            raise RequestError("adapter_load", f"{spec} is not a PEFT adapter folder (no adapter_config.json)", hint)
        try:
            acfg = json.loads(cfg_file.read_text())
        except (OSError, ValueError) as exc:
            raise RequestError("adapter_load", f"{cfg_file} is unreadable: {_one_line(exc)}") from exc
        self._check_adapter_base(path, acfg)
        if name in self.adapters:
            self._delete_adapter(name)
        from peft import PeftModel

        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    self.model, str(path), adapter_name=name, is_trainable=False, autocast_adapter_dtype=False
                )
            else:
                self.peft.load_adapter(str(path), adapter_name=name, is_trainable=False, autocast_adapter_dtype=False)
            self.peft.eval()
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                raise RequestError("oom", f"out of memory loading adapter {spec}") from exc
            text = _one_line(exc)
            if "size mismatch" in text or "shape" in text.lower():
                raise RequestError("adapter_mismatch", f"{spec} does not fit the loaded base: {text}") from exc
            raise RequestError("adapter_load", f"cannot load adapter {spec}: {text}") from exc
        mixable, why = self._mixable(name, acfg)
        self.adapters[name] = {
            "path": str(path.resolve()),
            "rank": acfg.get("r"),
            "alpha": acfg.get("lora_alpha"),
            "peft_type": acfg.get("peft_type"),
            "mixable": mixable,
            "why_not_mixable": why,
        }
        return {"name": name, "path": str(path.resolve()), "rank": acfg.get("r"), "mixable": mixable,
                "why_not_mixable": why, "adapters": sorted(self.adapters), "memory": self.memory()}

    def unload_adapter(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req.get("name")
        if name not in self.adapters:
            raise RequestError("unknown_adapter", f"no adapter named {name!r} is loaded")
        self._delete_adapter(str(name))
        return {"name": name, "adapters": sorted(self.adapters), "memory": self.memory()}

    def _delete_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)
        with contextlib.suppress(Exception):
            self.peft.delete_adapter(name)
        gc.collect()

    def _check_adapter_base(self, path: Path, acfg: dict[str, Any]) -> None:
        """Refuse an adapter trained on another base, before PEFT touches the model.

        The recorded base path is often absolute on another machine, so when it is missing here the
        adapter's tensor shapes are checked against the loaded model's layers instead.
        """
        mine = _fingerprint(self.model.config.to_dict())
        recorded = acfg.get("base_model_name_or_path") or ""
        rec_cfg = Path(recorded).expanduser() / "config.json" if recorded else None
        if rec_cfg is not None and rec_cfg.is_file():
            try:
                theirs = _fingerprint(json.loads(rec_cfg.read_text()))
            except (OSError, ValueError):
                theirs = {}
            diffs = [f"{k} {theirs[k]} ≠ {mine[k]}" for k in FINGERPRINT_KEYS if k in theirs and k in mine and theirs[k] != mine[k]]
            if diffs:
                raise RequestError(
                    "adapter_mismatch",
                    f"adapter {path.name} was trained on {recorded}, which differs from the loaded base "
                    f"{Path(self.model_path).name} ({'; '.join(diffs)})",
                )
        weights = path / "adapter_model.safetensors"
        if not weights.is_file():
            if not (path / "adapter_model.bin").is_file():
                raise RequestError("adapter_load", f"{path} has no adapter weights (adapter_model.safetensors)")
            return  # .bin: PEFT's own size checks apply
        from ..core.safetensors_header import SafetensorsError, read_header

        try:
            header = read_header(weights)
        except (SafetensorsError, OSError) as exc:
            raise RequestError("adapter_load", f"{weights} is unreadable: {exc}") from exc
        modules = dict(self.model.named_modules())
        for info in header.tensors:
            m = re.match(r"^base_model\.model\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", info.name)
            if not m:
                continue
            mod_name, which = m.group(1), m.group(2)
            module = modules.get(mod_name)
            if module is None:
                raise RequestError(
                    "adapter_mismatch",
                    f"adapter {path.name} targets layer '{mod_name}', which the loaded base "
                    f"{Path(self.model_path).name} does not have: it was trained on another model",
                )
            shape = info.shape
            in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
            if shape and len(shape) == 2 and in_f is not None and out_f is not None:
                expected = in_f if which == "A" else out_f
                actual = shape[1] if which == "A" else shape[0]
                if actual != expected:
                    raise RequestError(
                        "adapter_mismatch",
                        f"adapter {path.name} has shape {list(shape)} for '{mod_name}', but the loaded base has "
                        f"{in_f}→{out_f} there: it was trained on another model",
                    )

    def _mixable(self, name: str, acfg: dict[str, Any]) -> tuple[bool, str]:
        """Whether every layer of this adapter can take part in per-row mixing."""
        if acfg.get("peft_type") != "LORA":
            return False, f"{acfg.get('peft_type')} adapters are answered one side at a time"
        if acfg.get("modules_to_save") or acfg.get("trainable_token_indices"):
            return False, "the adapter trains whole modules (modules_to_save)"
        from peft.tuners.lora import LoraLayer
        from peft.tuners.lora.layer import Linear as LoraLinear

        nn = self.torch.nn
        for module in self.model.modules():
            if not isinstance(module, LoraLayer):
                continue
            has = name in getattr(module, "lora_A", {}) or name in getattr(module, "lora_embedding_A", {})
            if not has:
                continue
            if type(module) is not LoraLinear or type(module.base_layer) is not nn.Linear:
                return False, f"layer type {type(module).__name__} over {type(module.base_layer).__name__}"
            if getattr(module, "use_dora", {}).get(name) or getattr(module, "lora_variant", {}).get(name) is not None:
                return False, "DoRA/variant adapters are answered one side at a time"
            if getattr(module, "fan_in_fan_out", False) or module.lora_B[name].bias is not None:
                return False, "fan-in-fan-out or LoRA bias"
        return True, ""

    # --- prompts ----------------------------------------------------------------------------------------
    def prompt_ids(self, messages: list[dict[str, str]], system_prompt: str) -> list[int]:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": system_prompt})
        tok = self.tokenizer
        if self.chat_template == "model":
            try:
                text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            except Exception as exc:  # noqa: BLE001 - e.g. a template that refuses system messages
                raise RequestError("bad_request", f"the model's chat template refused this conversation: {_one_line(exc)}") from exc
        else:
            text = (tok.bos_token or "") + "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in msgs) + "Assistant:"
        return list(tok(text, add_special_tokens=False)["input_ids"])

    # --- per-row adapters -------------------------------------------------------------------------------
    def _row_mixing_ok(self, names: list[str]) -> bool:
        return all(n == P.BASE or self.adapters[n]["mixable"] for n in names)

    @contextlib.contextmanager
    def _rows(self, names: list[str]):
        """Route each batch row through its adapter for the duration of one batched forward loop."""
        if self.peft is None:
            yield _NoMix()
            return
        mix = _RowMix(self.torch, self.model, names)
        mix.install()
        try:
            yield mix
        finally:
            mix.uninstall()

    @contextlib.contextmanager
    def _single(self, name: str):
        """The plain PEFT path for one adapter (or the base): the sequential fallback."""
        if self.peft is None:
            yield _NoMix()
        elif name == P.BASE:
            with self.peft.disable_adapter():
                yield _NoMix()
        else:
            self.peft.set_adapter(name)
            yield _NoMix()

    # --- forward ---------------------------------------------------------------------------------------
    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:
            return DynamicCache()

    def _forward(self, ids: Any, attn: Any, pos: Any, cache: Any) -> Any:
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": attn, "position_ids": pos, "use_cache": True,
                                  self._cache_kw: cache}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return out.logits[:, -1, :]

    # --- generate --------------------------------------------------------------------------------------
    def generate(self, req: dict[str, Any]) -> dict[str, Any]:
        self._need_model()
        torch = self.torch
        rid = str(req.get("id"))
        sides_in = req.get("sides")
        if not isinstance(sides_in, list) or not sides_in:
            raise RequestError("bad_request", "generate needs a non-empty list of sides")
        settings = P.GenerationSettings.from_dict(req.get("settings"))
        problems = settings.problems()
        if problems:
            raise RequestError("bad_request", "; ".join(problems))
        mode = req.get("mode", "auto")
        names = []
        prompts = []
        for i, s in enumerate(sides_in):
            if not isinstance(s, dict):
                raise RequestError("bad_request", f"side {i} is not an object")
            adapter = s.get("adapter", P.BASE)
            if adapter != P.BASE and adapter not in self.adapters:
                raise RequestError("unknown_adapter", f"side {i}: no adapter named {adapter!r} is loaded")
            problem = P.validate_messages(s.get("messages"))
            if problem:
                raise RequestError("bad_request", f"side {i}: {problem}")
            names.append(adapter)
            prompts.append(self.prompt_ids(s["messages"], settings.system_prompt))
        stops = list(settings.stop) + (PLAIN_TEMPLATE_STOPS if self.chat_template == "plain" else [])
        t0 = time.perf_counter()
        self._reset_peak()
        self._kv_peak = 0
        sides = []
        for i, (name, ids) in enumerate(zip(names, prompts, strict=True)):
            max_new = settings.max_new_tokens
            if self.max_positions:
                room = self.max_positions - len(ids)
                if room < 1:
                    raise RequestError(
                        "bad_request",
                        f"side {i}: the conversation is {len(ids)} tokens, the model's limit is {self.max_positions}",
                        "start a new conversation",
                    )
                if room < max_new:
                    max_new = room
                    self.channel.emit(P.event(P.WARNING, rid, kind="context", message=(
                        f"side {i}: only {room} tokens left in the model's {self.max_positions}-token context")))
            gen = None
            if not settings.greedy:
                gen = torch.Generator(device=self.device).manual_seed(int(settings.seed))
            sides.append(Side(i, name, ids, max_new, generator=gen))
        batched = mode != "sequential" and len(sides) > 1 and self._row_mixing_ok(names)
        if mode == "batched" and len(sides) > 1 and not batched:
            why = "; ".join(sorted({self.adapters[n]["why_not_mixable"] for n in names if n != P.BASE and not self.adapters[n]["mixable"]}))
            self.channel.emit(P.event(P.WARNING, rid, kind="sequential", message=f"answering one side at a time: {why}"))
        run_mode = "batched" if batched or len(sides) == 1 else "sequential"
        self.channel.emit(P.event(P.STARTED, rid, mode=run_mode, sides=len(sides), prompt_tokens=[len(p) for p in prompts]))
        streamer = Streamer(self.tokenizer, self.eos_ids, stops, settings.ignore_eos, self.channel.emit, rid)
        cancelled = False
        with torch.inference_mode():
            if batched or len(sides) == 1:
                if self._row_mixing_ok(names):
                    with self._rows(names) as mix:
                        cancelled = self._decode(sides, settings, streamer, mix, rid, t0)
                else:
                    with self._single(names[0]) as mix:
                        cancelled = self._decode(sides, settings, streamer, mix, rid, t0)
            else:
                for side in sides:
                    if cancelled:
                        side.finish, side.t_done = "cancelled", time.perf_counter()
                        self._side_done(rid, side, t0)
                        continue
                    with self._single(side.adapter) as mix:
                        cancelled = self._decode([side], settings, streamer, mix, rid, t0)
        for side in sides:
            self.results[(rid, side.index)] = (side.prompt, side.answer_ids if side.finish == "eos" else side.ids, side.text)
        while len(self.results) > KEEP_RESULTS:
            self.results.popitem(last=False)
        self.inbox.forget(rid)
        memory = self.memory()
        memory["kv_cache_peak"] = self._kv_peak
        return {"mode": run_mode, "elapsed_s": time.perf_counter() - t0, "cancelled": cancelled, "memory": memory}

    def _decode(self, sides: list[Side], settings: P.GenerationSettings, streamer: Streamer, mix: Any, rid: str, t0: float) -> bool:
        """One batched decode loop over ``sides``; returns whether the request was cancelled."""
        torch = self.torch
        n = len(sides)
        width = max(len(s.prompt) for s in sides)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        for r, s in enumerate(sides):
            ids[r, width - len(s.prompt) :] = torch.tensor(s.prompt, dtype=torch.long)
            attn[r, width - len(s.prompt) :] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        pos = (attn.cumsum(-1) - 1).clamp_(min=0)
        cache = self._new_cache()
        _fault("generate")
        logits = self._forward(ids, attn, pos, cache)
        active = list(range(n))
        while True:
            tokens = self._pick(logits, [sides[i] for i in active], settings)
            now = time.perf_counter()
            keep = []
            for row, (i, tok) in enumerate(zip(active, tokens, strict=True)):
                side = sides[i]
                streamer.push(side, tok, now)
                if side.finish is None:
                    keep.append(row)
                else:
                    self._side_done(rid, side, t0)
            if len(keep) < len(active):
                self._note_cache(cache)
            if keep and self.inbox.cancelled(rid):
                self._note_cache(cache)
                for row in keep:
                    side = sides[active[row]]
                    side.finish, side.t_done = "cancelled", time.perf_counter()
                    self._side_done(rid, side, t0)
                return True
            if not keep:
                return False
            if len(keep) < len(active):
                idx = torch.tensor(keep, dtype=torch.long, device=self.device)
                cache.batch_select_indices(idx)
                attn, pos = attn[idx], pos[idx]
                mix.select(keep)
                active = [active[r] for r in keep]
                tokens = [tokens[r] for r in keep]
            nxt = torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(1)
            attn = torch.cat([attn, attn.new_ones((len(active), 1))], dim=1)
            pos = pos[:, -1:] + 1
            logits = self._forward(nxt, attn, pos, cache)

    def _note_cache(self, cache: Any) -> None:
        """Track the KV cache's size (it only grows until rows are dropped, so this is its peak)."""
        total = 0
        with contextlib.suppress(Exception):
            for layer in getattr(cache, "layers", []):
                for name in ("keys", "values"):
                    t = getattr(layer, name, None)
                    if t is not None and hasattr(t, "nbytes"):
                        total += int(t.nbytes)
        self._kv_peak = max(self._kv_peak, total)

    def _pick(self, logits: Any, sides: list[Side], settings: P.GenerationSettings) -> list[int]:
        torch = self.torch
        if settings.greedy:
            return logits.argmax(-1).tolist()
        probs = torch.softmax(logits.float() / float(settings.temperature), dim=-1)
        if settings.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            sorted_p = sorted_p.masked_fill((sorted_p.cumsum(-1) - sorted_p) > settings.top_p, 0.0)
            picks = [torch.multinomial(sorted_p[r], 1, generator=s.generator) for r, s in enumerate(sides)]
            return order.gather(1, torch.stack(picks)).squeeze(1).tolist()
        picks = [torch.multinomial(probs[r], 1, generator=s.generator) for r, s in enumerate(sides)]
        return torch.cat(picks).tolist()

    def _side_done(self, rid: str, side: Side, t0: float) -> None:
        n = len(side.answer_ids)
        end = side.t_done or time.perf_counter()
        ttft = (side.t_first - t0) if side.t_first is not None else None
        if n >= 2 and side.t_first is not None and side.t_last is not None and side.t_last > side.t_first:
            rate = (n - 1) / (side.t_last - side.t_first)
        else:
            rate = n / max(end - t0, 1e-9)
        self.channel.emit(P.event(
            P.SIDE_DONE, rid, side=side.index, adapter=side.adapter, text=side.text, tokens=n,
            finish_reason=side.finish, ttft_s=ttft, tokens_per_s=rate, elapsed_s=end - t0,
        ))

    # --- score ------------------------------------------------------------------------------------------
    def score(self, req: dict[str, Any]) -> dict[str, Any]:
        """Implicit DPO reward β·(log π_adapter(answer) − log π_base(answer)), summed over answer tokens."""
        self._need_model()
        torch = self.torch
        items = req.get("items")
        if not isinstance(items, list) or not items:
            raise RequestError("bad_request", "score needs a non-empty list of items")
        out = []
        with torch.inference_mode():
            for i, item in enumerate(items):
                adapter = item.get("adapter")
                if adapter not in self.adapters:
                    raise RequestError("unknown_adapter", f"item {i}: the reward needs a loaded tuned adapter, not {adapter!r}")
                beta = item.get("beta", 0.1)
                if not isinstance(beta, (int, float)) or not beta > 0:
                    raise RequestError("bad_request", f"item {i}: beta must be > 0")
                prompt, answer = self._score_tokens(i, item)
                if not answer:
                    out.append({"reward": 0.0, "logp_policy": 0.0, "logp_base": 0.0, "tokens": 0, "beta": beta, "adapter": adapter})
                    continue
                lp_policy, lp_base = self._logps(prompt, answer, adapter)
                out.append({"reward": beta * (lp_policy - lp_base), "logp_policy": lp_policy, "logp_base": lp_base,
                            "tokens": len(answer), "beta": beta, "adapter": adapter})
        return {"items": out}

    def _score_tokens(self, i: int, item: dict[str, Any]) -> tuple[list[int], list[int]]:
        ref = item.get("ref")
        if isinstance(ref, dict):
            key = (str(ref.get("request")), int(ref.get("side", 0)))
            if key not in self.results:
                raise RequestError("bad_request", f"item {i}: no kept answer for request {key[0]} side {key[1]}")
            prompt, answer, _text = self.results[key]
            return prompt, answer
        problem = P.validate_messages(item.get("messages"))
        if problem or not isinstance(item.get("answer"), str):
            raise RequestError("bad_request", f"item {i}: give ref, or messages and answer ({problem or 'answer must be text'})")
        prompt = self.prompt_ids(item["messages"], str(item.get("system_prompt") or ""))
        answer = list(self.tokenizer(item["answer"], add_special_tokens=False)["input_ids"])
        if self.eos_ids and item.get("add_eos", True):
            answer.append(self.tokenizer.eos_token_id if self.tokenizer.eos_token_id in self.eos_ids else min(self.eos_ids))
        return prompt, answer

    def _logps(self, prompt: list[int], answer: list[int], adapter: str) -> tuple[float, float]:
        torch = self.torch
        seq = torch.tensor([prompt + answer] * 2, dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = {"input_ids": seq, "attention_mask": torch.ones_like(seq)}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = len(answer) + 1
        names = [adapter, P.BASE]
        if self._row_mixing_ok(names):
            with self._rows(names):
                logits = self.model(**kwargs).logits
        else:
            parts = []
            for r, name in enumerate(names):
                with self._single(name):
                    one = {k: v[r : r + 1] for k, v in kwargs.items() if k != "logits_to_keep"}
                    if "logits_to_keep" in kwargs:
                        one["logits_to_keep"] = kwargs["logits_to_keep"]
                    parts.append(self.model(**one).logits)
            logits = torch.cat(parts)
        logits = logits[:, -(len(answer) + 1) : -1, :].float()
        target = torch.tensor(answer, dtype=torch.long, device=self.device).unsqueeze(0).expand(2, -1)
        logp = torch.log_softmax(logits, dim=-1).gather(2, target.unsqueeze(2)).squeeze(2).sum(-1)
        return float(logp[0]), float(logp[1])


class _NoMix:
    def select(self, keep: list[int]) -> None:
        pass


class _RowMix:
    """Per-row LoRA for one request: patches each LoRA Linear's forward, restores it afterwards.

    For a layer ``y = W x + s · B A x`` the row-wise update is ``y += (x Aᵀ) Bᵀ`` with A, B and s
    chosen per row: one adapter over all rows is a broadcast matmul; one adapter plus base rows
    multiplies the rank-r intermediate by a 0/s row mask; several adapters stack their (zero-padded)
    A and s·B per row and use batched matmuls.
    """

    def __init__(self, torch: Any, model: Any, names: list[str]) -> None:
        from peft.tuners.lora import LoraLayer

        self.torch = torch
        self.names = list(names)
        self.layers = [m for m in model.modules() if isinstance(m, LoraLayer) and hasattr(m, "base_layer")]
        self.plans: dict[int, dict[str, Any]] = {}
        for layer in self.layers:
            self.plans[id(layer)] = self._plan(layer)

    def _plan(self, layer: Any) -> dict[str, Any] | None:
        torch = self.torch
        present = [n for n in dict.fromkeys(self.names) if n != P.BASE and n in layer.lora_A]
        if not present:
            return None
        dtype = layer.base_layer.weight.dtype  # adapters may be stored in another dtype than the base
        if len(present) == 1:
            name = present[0]
            a_t = layer.lora_A[name].weight.t().to(dtype)
            b_t = layer.lora_B[name].weight.t().to(dtype)
            scale = float(layer.scaling[name])
            if all(n == name for n in self.names):
                return {"kind": "one", "a": a_t, "b": b_t, "scale": scale}
            mask = torch.tensor([scale if n == name else 0.0 for n in self.names], dtype=a_t.dtype, device=a_t.device)
            return {"kind": "masked", "a": a_t, "b": b_t, "mask": mask.view(-1, 1, 1)}
        rank = max(layer.lora_A[n].weight.shape[0] for n in present)
        device = layer.base_layer.weight.device
        in_f, out_f = layer.in_features, layer.out_features
        a_rows = torch.zeros((len(self.names), in_f, rank), dtype=dtype, device=device)
        b_rows = torch.zeros((len(self.names), rank, out_f), dtype=dtype, device=device)
        for r, n in enumerate(self.names):
            if n in present:
                a = layer.lora_A[n].weight
                a_rows[r, :, : a.shape[0]] = a.t()
                b_rows[r, : a.shape[0], :] = layer.lora_B[n].weight.t() * float(layer.scaling[n])
        return {"kind": "stacked", "a": a_rows, "b": b_rows}

    def install(self) -> None:
        for layer in self.layers:
            plan = self.plans[id(layer)]
            layer.forward = self._make_forward(layer.base_layer, plan)

    def uninstall(self) -> None:
        for layer in self.layers:
            with contextlib.suppress(AttributeError):
                del layer.forward

    def select(self, keep: list[int]) -> None:
        for plan in self.plans.values():
            if plan is None:
                continue
            if plan["kind"] == "masked":
                plan["mask"] = plan["mask"][keep]
            elif plan["kind"] == "stacked":
                plan["a"], plan["b"] = plan["a"][keep], plan["b"][keep]

    def _make_forward(self, base: Any, plan: dict[str, Any] | None) -> Any:
        torch = self.torch
        if plan is None:
            def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
                return base(x, *args, **kwargs)
            return forward

        def forward(x: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: F811 - one of the two closures
            y = base(x, *args, **kwargs)
            kind = plan["kind"]
            if kind == "one":
                return y.add_(torch.matmul(torch.matmul(x, plan["a"]), plan["b"]), alpha=plan["scale"])
            if kind == "masked":
                t = torch.matmul(x, plan["a"]) * plan["mask"]
                return y.add_(torch.matmul(t, plan["b"]))
            return torch.baddbmm(y, torch.bmm(x, plan["a"]), plan["b"])

        return forward


# --- helpers ----------------------------------------------------------------------------------------------
def _fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    out = {k: cfg.get(k) for k in FINGERPRINT_KEYS if cfg.get(k) is not None}
    if config.get("architectures"):
        out["architectures"] = config["architectures"]
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


_FAULTS_FIRED: set[str] = set()


def _fault(point: str) -> None:
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


# --- main ---------------------------------------------------------------------------------------------------
HANDLERS = {
    P.LOAD_MODEL: ("load_model", P.MODEL_LOADED),
    P.LOAD_ADAPTER: ("load_adapter", P.ADAPTER_LOADED),
    P.UNLOAD_ADAPTER: ("unload_adapter", P.ADAPTER_UNLOADED),
    P.GENERATE: ("generate", P.DONE),
    P.SCORE: ("score", P.SCORES),
}


def _private_stdout() -> Any:
    """Keep the real stdout for protocol lines; send every stray print (ours or a library's) to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.chat", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="load this base model at start (same as a load_model request)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)

    channel = Channel(_private_stdout())
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    channel.emit(P.event(P.HELLO, pid=os.getpid(), v=P.PROTOCOL_VERSION))
    inbox = Inbox(stdin, channel)
    inbox.start()
    try:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        import peft

        engine = Engine(channel, inbox)
    except Exception as exc:  # noqa: BLE001 - a broken install: say so and exit
        traceback.print_exc()
        channel.emit(P.error_event("internal", f"cannot import the ML stack: {_one_line(exc)}"))
        return 1
    channel.emit(P.event(
        P.READY, torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
        cuda=torch.cuda.is_available(), cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
    ))
    if args.model:
        _handle(engine, channel, {"op": P.LOAD_MODEL, "id": "startup", "model": args.model, "device": args.device, "dtype": args.dtype})
    while True:
        req = inbox.requests.get()
        if req is None or req.get("op") == P.SHUTDOWN:
            break
        _handle(engine, channel, req)
    channel.emit(P.event(P.BYE))
    return 0


def _handle(engine: Engine, channel: Channel, req: dict[str, Any]) -> None:
    op, rid = req.get("op"), req.get("id")
    try:
        if op == P.MEMORY:
            channel.emit(P.event(P.MEMORY_INFO, rid, **engine.memory()))
            return
        if op not in HANDLERS:
            raise RequestError("bad_request", f"unknown op {op!r}; one of {', '.join(sorted(P.OPS))}")
        method, reply = HANDLERS[op]
        fields = getattr(engine, method)(req)
        channel.emit(P.event(reply, rid, **fields))
    except RequestError as exc:
        channel.emit(P.error_event(exc.kind, exc.message, rid, exc.hint))
    except Exception as exc:  # noqa: BLE001 - the worker outlives any one request
        traceback.print_exc()
        if _is_oom(exc):
            with contextlib.suppress(Exception):
                gc.collect()
                if engine.torch.cuda.is_available():
                    engine.torch.cuda.empty_cache()
            channel.emit(P.error_event("oom", f"out of memory during {op}: {_one_line(exc)}", rid))
        else:
            kind = "generation" if op in (P.GENERATE, P.SCORE) else "internal"
            channel.emit(P.error_event(kind, f"{op} failed: {type(exc).__name__}: {_one_line(exc)}", rid))
    finally:
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
