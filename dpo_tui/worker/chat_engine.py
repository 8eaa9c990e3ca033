"""The chat worker's engine: one base model, LoRA adapters by name, batched side-by-side generation.

How a request for N sides becomes one batched generation is told in ``dpo_tui/worker/chat.py``.
:class:`Engine` answers the requests (``load_model``, ``load_adapter``, ``unload_adapter``,
``generate``, ``score``, ``memory``); the adapter checks and per-row mixing live in
``chat_lora.py``, token streaming in ``chat_stream.py``.

This module is longer than most: model state, prompt building, the manual decode loop and scoring
share the loaded model, tokenizer, cache settings and kept answers, and read as one thing.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..core import chat_protocol as P
from ..core.errors import first_line
from ..core.fsutil import JSON_ERRORS
from .chat_io import Channel, Inbox, RequestError, fault, is_oom
from .chat_lora import NoMix, RowMix, check_adapter_base, fingerprint, mixable
from .chat_stream import Side, Streamer

# Used when a tokenizer has no chat template (the UI and CLI say so).
PLAIN_TEMPLATE_STOPS = ["\nUser:", "\nSystem:"]
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEEP_RESULTS = 256  # (request, side) answers kept for ``score`` by reference
SMALL_MODEL_PARAMS = 50_000_000  # below this, CPU generation runs on one thread


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
        except Exception as exc:
            raise RequestError("model_load", f"cannot load the tokenizer of {spec}: {first_line(exc)}") from exc
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path) if path.exists() else spec, dtype=dtype, trust_remote_code=trust)
            model.to(device)
        except Exception as exc:
            if is_oom(exc):
                raise RequestError("oom", f"out of memory loading {spec} on {device}") from exc
            raise RequestError("model_load", f"cannot load {spec}: {first_line(exc)}") from exc
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
            "fingerprint": fingerprint(model.config.to_dict()),
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
        except (OSError, *JSON_ERRORS) as exc:
            raise RequestError("adapter_load", f"{cfg_file} is unreadable: {first_line(exc)}") from exc
        check_adapter_base(self.model, self.model_path, path, acfg)
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
        except Exception as exc:
            if is_oom(exc):
                raise RequestError("oom", f"out of memory loading adapter {spec}") from exc
            text = first_line(exc)
            if "size mismatch" in text or "shape" in text.lower():
                raise RequestError("adapter_mismatch", f"{spec} does not fit the loaded base: {text}") from exc
            raise RequestError("adapter_load", f"cannot load adapter {spec}: {text}") from exc
        can_mix, why = mixable(self.torch, self.model, name, acfg)
        self.adapters[name] = {
            "path": str(path.resolve()),
            "rank": acfg.get("r"),
            "alpha": acfg.get("lora_alpha"),
            "peft_type": acfg.get("peft_type"),
            "mixable": can_mix,
            "why_not_mixable": why,
        }
        return {"name": name, "path": str(path.resolve()), "rank": acfg.get("r"), "mixable": can_mix,
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

    # --- prompts ----------------------------------------------------------------------------------------
    def prompt_ids(self, messages: list[dict[str, str]], system_prompt: str) -> list[int]:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": system_prompt})
        tok = self.tokenizer
        if self.chat_template == "model":
            try:
                text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            except Exception as exc:
                raise RequestError("template", f"the model's chat template refused this conversation: {first_line(exc)}") from exc
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
            yield NoMix()
            return
        mix = RowMix(self.torch, self.model, names)
        mix.install()
        try:
            yield mix
        finally:
            mix.uninstall()

    @contextlib.contextmanager
    def _single(self, name: str):
        """The plain PEFT path for one adapter (or the base): the sequential fallback."""
        if self.peft is None:
            yield NoMix()
        elif name == P.BASE:
            with self.peft.disable_adapter():
                yield NoMix()
        else:
            self.peft.set_adapter(name)
            yield NoMix()

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
        seeds = []
        for i, s in enumerate(sides_in):
            if not isinstance(s, dict):
                raise RequestError("bad_request", f"side {i} is not an object")
            adapter = s.get("adapter", P.BASE)
            if adapter != P.BASE and adapter not in self.adapters:
                raise RequestError("unknown_adapter", f"side {i}: no adapter named {adapter!r} is loaded")
            problem = P.validate_messages(s.get("messages"))
            if problem:
                raise RequestError("bad_request", f"side {i}: {problem}")
            seed = s.get("seed", settings.seed)
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise RequestError("bad_request", f"side {i}: seed must be an integer")
            names.append(adapter)
            seeds.append(seed)
            prompts.append(self.prompt_ids(s["messages"], settings.system_prompt))
        stops = list(settings.stop) + (PLAIN_TEMPLATE_STOPS if self.chat_template == "plain" else [])
        t0 = time.perf_counter()
        self._reset_peak()
        self._kv_peak = 0
        sides = []
        for i, (name, ids, seed) in enumerate(zip(names, prompts, seeds, strict=True)):
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
                gen = torch.Generator(device=self.device).manual_seed(int(seed))
            sides.append(Side(i, name, ids, max_new, generator=gen))
        batched = mode != "sequential" and len(sides) > 1 and self._row_mixing_ok(names)
        if mode == "batched" and len(sides) > 1 and not batched:
            why = "; ".join(sorted({self.adapters[n]["why_not_mixable"] for n in names if n != P.BASE and not self.adapters[n]["mixable"]}))
            self.channel.emit(P.event(P.WARNING, rid, kind="sequential", message=f"answering one side at a time: {why}"))
        run_mode = "batched" if batched or len(sides) == 1 else "sequential"
        self.channel.emit(P.event(P.STARTED, rid, mode=run_mode, sides=len(sides), prompt_tokens=[len(p) for p in prompts]))
        streamer = Streamer(self.tokenizer, self.eos_ids, stops, settings.ignore_eos, self.channel.emit, rid,
                            stream=bool(req.get("stream", True)))
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
        fault("generate")
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

