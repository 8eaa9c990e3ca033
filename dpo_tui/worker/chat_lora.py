"""LoRA adapters in the chat worker: whether one fits the loaded base, and per-row adapter mixing.

:func:`check_adapter_base` refuses an adapter trained on another base before PEFT touches the
model; :func:`mixable` says whether every layer of an adapter can take part in per-row mixing;
:class:`RowMix` routes each batch row through its own adapter for one request (:class:`NoMix` is
the no-op stand-in the decode loop gets when no mixing is needed).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from ..core import chat_protocol as P
from ..core.fsutil import JSON_ERRORS
from ..core.model_fingerprint import fingerprint, fingerprint_diffs
from .chat_io import RequestError


def check_adapter_base(model: Any, model_path: str, path: Path, acfg: dict[str, Any]) -> None:
    """Refuse an adapter trained on another base, before PEFT touches the model.

    The recorded base path is often absolute on another machine, so when it is missing here the
    adapter's tensor shapes are checked against the loaded model's layers instead.
    """
    mine = fingerprint(model.config.to_dict())
    recorded = acfg.get("base_model_name_or_path") or ""
    rec_cfg = Path(recorded).expanduser() / "config.json" if recorded else None
    if rec_cfg is not None and rec_cfg.is_file():
        try:
            theirs = fingerprint(json.loads(rec_cfg.read_text()))
        except (OSError, *JSON_ERRORS):
            theirs = {}
        diffs = fingerprint_diffs(theirs, mine)
        if diffs:
            raise RequestError(
                "adapter_mismatch",
                f"adapter {path.name} was trained on {recorded}, which differs from the loaded base "
                f"{Path(model_path).name} ({'; '.join(diffs)})",
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
    modules = dict(model.named_modules())
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
                f"{Path(model_path).name} does not have: it was trained on another model",
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

def mixable(torch: Any, model: Any, name: str, acfg: dict[str, Any]) -> tuple[bool, str]:
    """Whether every layer of this adapter can take part in per-row mixing."""
    if acfg.get("peft_type") != "LORA":
        return False, f"{acfg.get('peft_type')} adapters are answered one side at a time"
    if acfg.get("modules_to_save") or acfg.get("trainable_token_indices"):
        return False, "the adapter trains whole modules (modules_to_save)"
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import Linear as LoraLinear

    nn = torch.nn
    for module in model.modules():
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


class NoMix:
    """No per-row routing: the model as it is (no adapter, or the plain PEFT path)."""

    def select(self, keep: list[int]) -> None:
        pass


class RowMix:
    """Per-row LoRA for one request: patches each LoRA Linear's forward, restores it afterwards.

    For a layer ``y = W x + s · B A x`` the row-wise update is ``y += (x Aᵀ) Bᵀ`` with A, B and s
    chosen per row: one adapter over all rows is a broadcast matmul; one adapter plus base rows
    multiplies the rank-r intermediate by a 0/s row mask; several adapters put their A side by side and
    their s·B one above the other, and a 0/1 row mask keeps each row to its own adapter's rank slice.
    """

    def __init__(self, torch: Any, model: Any, names: list[str]) -> None:
        from peft.tuners.lora import LoraLayer

        self.torch = torch
        self.names = list(names)
        self.layers = [m for m in model.modules() if isinstance(m, LoraLayer) and hasattr(m, "base_layer")]
        self.plans: dict[int, dict[str, Any] | None] = {}
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
        # Two dense matmuls per layer whatever the rows' mix, and no per-row copy of any adapter matrix
        # (per-row copies would cost rows × in × rank memory and a batched matmul per layer).
        a_parts, b_parts, spans, start = [], [], {}, 0
        for name in present:
            a = layer.lora_A[name].weight
            a_parts.append(a.t().to(dtype))
            b_parts.append((layer.lora_B[name].weight.t() * float(layer.scaling[name])).to(dtype))
            spans[name] = (start, start + a.shape[0])
            start += a.shape[0]
        mask = torch.zeros((len(self.names), 1, start), dtype=dtype, device=layer.base_layer.weight.device)
        for r, n in enumerate(self.names):
            if n in spans:
                mask[r, :, spans[n][0] : spans[n][1]] = 1
        return {"kind": "masked", "a": torch.cat(a_parts, dim=1), "b": torch.cat(b_parts, dim=0), "mask": mask}

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

    def _make_forward(self, base: Any, plan: dict[str, Any] | None) -> Any:
        torch = self.torch
        if plan is None:
            def passthrough(x: Any, *args: Any, **kwargs: Any) -> Any:
                return base(x, *args, **kwargs)
            return passthrough

        def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
            y = base(x, *args, **kwargs)
            kind = plan["kind"]
            if kind == "one":
                return y.add_(torch.matmul(torch.matmul(x, plan["a"]), plan["b"]), alpha=plan["scale"])
            t = torch.matmul(x, plan["a"]) * plan["mask"]
            return y.add_(torch.matmul(t, plan["b"]))

        return forward

