"""Which GPUs a run from the experiment screen would take, and what to warn about them.

Pure functions of a ``core.gpus.GpuInventory`` and a RunConfig, so they are tested without a screen
(``tests/ui/test_gpu_picker.py``).
"""

from __future__ import annotations

from typing import Any

from ..core.config import RunConfig


def usable_gpus(inventory: Any) -> list[Any]:
    """The inventory's GPUs that this console (and so a run it launches) may use: CUDA_VISIBLE_DEVICES applies."""
    return inventory.visible() if inventory is not None and getattr(inventory, "gpus", None) else []


def chosen_gpus(inventory: Any, config: RunConfig | None) -> list[Any]:
    """The GPUs a run with ``config`` would take: its ``gpus``, else the first ``nproc`` usable ones."""
    gpus = usable_gpus(inventory)
    if not gpus:
        return []
    nproc = config.nproc if config else 1
    wanted = list(config.gpus) if config and config.gpus else [g.index for g in gpus[:nproc]]
    return [g for g in gpus if g.index in wanted]


def device_note(inventory: Any, config: RunConfig | None, user: str | None = None) -> str:
    """A warning when the chosen GPUs are missing or shared with other users; "" when all is well."""
    from ..core.preflight import describe_ids

    gpus = usable_gpus(inventory)
    if not gpus or config is None:
        return ""
    chosen = chosen_gpus(inventory, config)
    missing = sorted(set(config.gpus) - {g.index for g in gpus})
    if missing:
        usable = describe_ids([g.index for g in gpus])
        return f"GPU {','.join(map(str, missing))} is not usable here (GPUs {usable}; ctrl+o picks)"
    if config.nproc > len(gpus):
        return f"nproc {config.nproc} but {len(gpus)} GPU{'s are' if len(gpus) != 1 else ' is'} usable here"
    shared = []
    for gpu in chosen:
        others = gpu.others(user)
        if others:
            taken = sum(p.used_bytes or 0 for p in others) / 1024**3
            users = ", ".join(sorted({p.user or "unknown user" for p in others}))
            shared.append(f"GPU{gpu.index} also used by {users} ({taken:.1f} GiB)")
    return "; ".join(shared) + ("  · ctrl+o picks other GPUs" if shared else "")
