"""What a run uses when the operator does not say: one answer for ``train``, ``estimate``, ``data check``
and the console, so an estimate describes the run that would actually start.

``default_config`` is the config ``dpo-tui train`` builds from flags alone (the sample experiment's
settings when training the sample model); ``estimate_device`` is the memory an estimate is checked
against and whether that is a GPU (with its CUDA context) or CPU RAM (tensors only), as the console's
VRAM bar decides it.
"""

from __future__ import annotations

from typing import Any

from .config import SAMPLE_PRESET, RunConfig, build_config


def default_values(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of train's defaults, unvalidated: the sample preset when the model is (or
    defaults to) the sample. The console's experiment form starts from these values too."""
    base: dict[str, Any] = {}
    if overrides.get("model", "sample") == "sample":
        base = dict(SAMPLE_PRESET)
        if "dataset" in overrides and "model" not in overrides:
            base.pop("dataset")
    base.update(overrides)
    return base


def default_config(overrides: dict[str, Any]) -> RunConfig:
    """:func:`default_values`, validated: the config ``dpo-tui train`` builds from these flags alone."""
    return build_config(default_values(overrides))


def estimate_device(inventory: Any, config: RunConfig) -> tuple[int | None, str]:
    """``(free bytes, device)`` for ``vram.estimate``: the chosen GPUs' smallest free memory and ``cuda``,
    or, with no usable GPU (the run would train on the CPU), the free RAM and ``cpu``."""
    gpus = inventory.visible() if inventory is not None and getattr(inventory, "gpus", None) else []
    if not gpus:
        ram = getattr(inventory, "ram_available", 0) if inventory is not None else 0
        return (int(ram) if ram else None), "cpu"
    wanted = list(config.gpus) if config.gpus else [g.index for g in gpus[: max(1, config.nproc)]]
    chosen = [g for g in gpus if g.index in wanted]
    if not chosen:
        return None, "cuda"
    return int(min(g.memory_free for g in chosen)), "cuda"
