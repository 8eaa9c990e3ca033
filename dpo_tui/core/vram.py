"""Peak GPU memory of a DPO run, before launching it: the estimate, its verdict and what would make it fit.

:func:`estimate` translates a RunConfig into a :class:`Workload`, runs the formulas of
:mod:`.vram_formulas` and compares the peak with the free memory; :func:`suggestions` tries the
changes an operator can make. Pure and fast (well under a millisecond): the UI calls it per keystroke.
The formulas' names are re-exported here, the one import path for the rest of the console.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .vram_formulas import (
    ALLOCATOR_DYNAMIC_FRACTION,
    ALLOCATOR_STATIC_FRACTION,
    COMPONENT_LABELS,
    COMPONENTS,
    CUDA_CONTEXT_BYTES,
    FUSED_TOKEN_CHUNK,
    FUSED_VOCAB_CHUNK,
    OPTIMIZER_STATE_BYTES,
    OPTIMIZER_TEMP_STATES,
    QLORA_BYTES_PER_PARAM,
    TORCH_TILE_BWD_BYTES,
    TORCH_TILE_FWD_BYTES,
    Arch,
    Breakdown,
    GiB,
    MiB,
    Workload,
    compute,
    layer_activation_bytes,
    lora_param_count,
    resolve_targets,
)

if TYPE_CHECKING:  # pragma: no cover
    from .config import RunConfig
    from .model_info import ModelInfo

__all__ = [
    "ALLOCATOR_DYNAMIC_FRACTION", "ALLOCATOR_STATIC_FRACTION", "COMPONENTS", "COMPONENT_LABELS", "CUDA_CONTEXT_BYTES",
    "FUSED_SINCE", "FUSED_TOKEN_CHUNK", "FUSED_VOCAB_CHUNK", "GiB", "MiB", "OPTIMIZER_STATE_BYTES", "OPTIMIZER_TEMP_STATES",
    "QLORA_BYTES_PER_PARAM", "TIGHT_FRACTION",
    "TORCH_TILE_BWD_BYTES", "TORCH_TILE_FWD_BYTES", "Arch", "Breakdown", "Estimate", "Suggestion", "Workload", "compute",
    "estimate", "installed_trl_version", "layer_activation_bytes", "logits_model_for", "lora_param_count",
    "resolve_targets", "suggestions", "workload_for",
]

TIGHT_FRACTION = 0.90
"""Fits with less than 10 % headroom → verdict ``tight``."""
FUSED_SINCE = (1, 16)
"""First TRL version known to compute DPO log-probs with the fused chunked LM head (the project pins ≥ 1.16)."""


# ---------------------------------------------------------------------------------------------
# the public estimate


@dataclass
class Suggestion:
    """A change to the RunConfig that lowers the estimate, with the new estimate."""

    label: str
    changes: dict[str, Any]
    total_bytes: int
    fits: bool | None


@dataclass
class Estimate:
    total_bytes: int
    components: dict[str, int]
    per_device_free: int | None
    fits: bool | None
    verdict: str
    """``fits`` | ``tight`` (fits with < 10 % headroom) | ``no`` | ``unknown`` (no free-memory figure)."""
    suggestions: list[Suggestion] = field(default_factory=list)
    seq_len: int = 0
    """The padded length assumed (min of max_length and the dataset's longest pair)."""
    tokens: int = 0
    """Tokens in one micro-batch on one GPU (2 × batch × length for DPO)."""
    peak_phase: str = ""
    lora_params: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def band(self) -> tuple[int, int]:
        """The range to expect: the estimate is meant to err high by up to ~15 %."""
        return int(self.total_bytes * 0.87), self.total_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "components": dict(self.components),
            "fits": self.fits,
            "suggestions": [
                {"label": s.label, "changes": s.changes, "total_bytes": s.total_bytes, "fits": s.fits} for s in self.suggestions
            ],
            "verdict": self.verdict,
            "free_bytes": self.per_device_free,
            "padded_length": self.seq_len,
            "peak_phase": self.peak_phase,
            "lora_params": self.lora_params,
            "notes": list(self.notes),
        }


@lru_cache(maxsize=1)
def installed_trl_version() -> tuple[int, ...] | None:
    """TRL's version from package metadata (no import); None when TRL is not installed here."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("trl")
        except PackageNotFoundError:
            return None
    except Exception:  # noqa: BLE001 - broken package metadata reads as not installed
        return None
    return _parse_version(text)


def _parse_version(text: str) -> tuple[int, ...] | None:
    nums = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        nums.append(int(digits))
    return tuple(nums) or None


def logits_model_for(trl_version: str | tuple[int, ...] | None) -> str | float:
    """``fused`` for TRL ≥ 1.16; else k bytes per token·vocabulary entry (docs/design/vram.md)."""
    if trl_version is None:
        ver = installed_trl_version() or FUSED_SINCE  # the project pins trl ≥ 1.16
    elif isinstance(trl_version, str):
        ver = _parse_version(trl_version) or FUSED_SINCE
    else:
        ver = tuple(trl_version)
    if ver >= FUSED_SINCE:
        return "fused"
    if ver >= (0, 29):
        return 6.0
    if ver >= (0, 15):
        return 4.0
    return 8.0


def _precision(value: str) -> str:
    return "bf16" if value in ("auto", "bf16") else value


def workload_for(config: Any, padded_length: int | None = None, trl_version: str | None = None) -> Workload:
    """Translate a RunConfig (or anything with its attribute names) into a :class:`Workload`."""
    max_length = int(config.max_length)
    seq = min(max_length, int(padded_length)) if padded_length else max_length
    method = config.method
    return Workload(
        method=method,
        batch=int(config.per_device_batch_size),
        seq_len=max(1, seq),
        lora_rank=int(config.lora_rank),
        lora_targets=tuple(config.lora_target_modules),
        precision=_precision(getattr(config, "precision", "auto")),
        grad_ckpt=bool(config.gradient_checkpointing),
        optimizer=getattr(config, "optimizer", "adamw_torch"),
        accumulation=int(getattr(config, "gradient_accumulation", 1) or 1),
        precompute_ref=bool(getattr(config, "precompute_ref_log_probs", False)) and method == "full",
        logits=logits_model_for(trl_version),
        nproc=int(getattr(config, "nproc", 1)),
        strategy=getattr(config, "strategy", "ddp"),
    )


def _verdict(total: int, free: int | None) -> tuple[bool | None, str]:
    if free is None:
        return None, "unknown"
    if total <= TIGHT_FRACTION * free:
        return True, "fits"
    if total <= free:
        return True, "tight"
    return False, "no"


def estimate(
    model: ModelInfo,
    config: RunConfig | Any,
    *,
    padded_length: int | None = None,
    free_bytes: int | None = None,
    trl_version: str | None = None,
    suggest: bool = True,
    device: str = "cuda",
) -> Estimate:
    """Peak GPU memory per device for a DPO run of ``config`` on ``model``; never raises for missing facts.

    ``device="cpu"`` (a machine without GPUs) counts the tensors only: there is no CUDA context and
    no caching allocator's slack in RAM.
    """
    wl = workload_for(config, padded_length, trl_version)
    if device == "cpu":
        # no Triton on CPU: TRL folds the logits tiles with torch ops, whose fp32 temporaries count
        # and torch's AdamW steps one parameter at a time on CPU tensors
        wl = replace(wl, metric="allocated", head_kernel="torch", optimizer_foreach=False)
    try:
        arch = Arch.from_model(model)
    except ValueError as exc:
        return Estimate(0, {name: 0 for name in COMPONENTS}, free_bytes, None, "unknown", seq_len=wl.seq_len, notes=[str(exc)])
    br = compute(arch, wl)
    total = br.total
    fits, verdict = _verdict(total, free_bytes)
    est = Estimate(
        total_bytes=total,
        components=br.components,
        per_device_free=free_bytes,
        fits=fits,
        verdict=verdict,
        seq_len=wl.seq_len,
        tokens=wl.tokens,
        peak_phase=br.phase,
        lora_params=br.lora_params,
        notes=list(br.notes),
    )
    if padded_length is None:
        est.notes.append(f"assumes every batch is padded to max_length={wl.seq_len}; give a dataset for its real length")
    if suggest and verdict in ("no", "tight"):
        est.suggestions = suggestions(arch, wl, free_bytes, config)
    return est


def _fits(total: int, free: int | None) -> bool | None:
    return None if free is None else total <= free


def suggestions(arch: Arch, wl: Workload, free: int | None, config: Any = None) -> list[Suggestion]:
    """What would make it fit, each with its new estimate. Target: fit with the usual 10 % headroom."""
    target = int(free * TIGHT_FRACTION) if free else None
    out: list[Suggestion] = []

    def total_of(**changes: Any) -> int:
        return compute(arch, replace(wl, **changes)).total

    def add(label: str, changes: dict[str, Any], total: int) -> None:
        out.append(Suggestion(label, changes, total, _fits(total, free)))

    accumulation = int(getattr(config, "gradient_accumulation", 1) or 1)
    if target is not None and wl.batch > 1:
        best = None
        lo, hi = 1, wl.batch - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if total_of(batch=mid) <= target:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        if best is not None:
            acc = math.ceil(wl.batch * accumulation / best)
            add(
                f"batch size {best} × accumulation {acc} (same effective batch)",
                {"per_device_batch_size": best, "gradient_accumulation": acc},
                total_of(batch=best),
            )
    if not wl.grad_ckpt:
        add("turn on gradient checkpointing", {"gradient_checkpointing": True}, total_of(grad_ckpt=True))
    if wl.method == "lora":
        add("load the base in 4-bit (QLoRA)", {"method": "qlora"}, total_of(method="qlora", adapter_dtype=None))
    if wl.method == "full":
        if not wl.precompute_ref:
            add("precompute reference log-probs (no reference copy)", {"precompute_ref_log_probs": True}, total_of(precompute_ref=True))
        add("train a LoRA adapter instead", {"method": "lora"}, total_of(method="lora"))
    if target is not None and wl.seq_len > 128:
        best_len = None
        lo, hi = 1, (wl.seq_len - 1) // 64
        while lo <= hi:
            mid = (lo + hi) // 2
            if total_of(seq_len=mid * 64) <= target:
                best_len, lo = mid * 64, mid + 1
            else:
                hi = mid - 1
        if best_len:
            add(f"max length {best_len} (longer pairs are truncated)", {"max_length": best_len}, total_of(seq_len=best_len))
    if target is not None and wl.nproc == 1 and compute(arch, wl).total > target:
        # One GPU is not enough: shard over several (ZeRO-3 shards weights, gradients and optimizer
        # state; ZeRO-2 keeps the weights whole, which suffices when the frozen base fits).
        for strategy in ("zero2", "zero3"):
            n = next((k for k in (2, 4, 8) if total_of(nproc=k, strategy=strategy) <= target), None)
            if n is not None:
                add(
                    f"shard over {n} GPUs with {strategy.upper().replace('ZERO', 'ZeRO-')} (--nproc {n} --strategy {strategy})",
                    {"nproc": n, "strategy": strategy},
                    total_of(nproc=n, strategy=strategy),
                )
                break
    if target is not None and not any(s.fits for s in out):
        combo: dict[str, Any] = {"batch": 1, "grad_ckpt": True}
        changes: dict[str, Any] = {"per_device_batch_size": 1, "gradient_checkpointing": True}
        if wl.batch > 1:
            changes["gradient_accumulation"] = wl.batch * accumulation
        if wl.method == "lora":
            combo["method"], changes["method"] = "qlora", "qlora"
        elif wl.method == "full":
            combo["precompute_ref"], changes["precompute_ref_log_probs"] = True, True
        total = total_of(**combo)
        if total < compute(arch, wl).total:
            add("all of the above at batch size 1", changes, total)
    return out
