"""How a failed training attempt is described: a kind, one line for the operator, and a hint.

:class:`RunFailed` is raised for failures the trainer recognises itself (bad data, a missing chat
template, an unknown LoRA target); :func:`classify` maps any other exception the same way. The full
traceback goes to trainer.log only.
"""

from __future__ import annotations

import errno

from ..core.config import RunConfig
from ..core.errors import UserError, first_line


class RunFailed(Exception):
    """A failure with a kind and a hint, reported as the run's terminal ``failed`` event."""

    def __init__(self, kind: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint



def oom_hint(config: RunConfig, phase: str) -> str:
    tips = []
    if config.per_device_batch_size > 1:
        tips.append(
            f"halve the batch (per_device_batch_size={config.per_device_batch_size // 2}, "
            f"gradient_accumulation={config.gradient_accumulation * 2})"
        )
    if not config.gradient_checkpointing:
        tips.append("turn on gradient_checkpointing")
    tips.append(f"lower max_length (now {config.max_length})")
    if config.method == "full":
        tips.append("use method 'lora' (no reference copy, no full optimizer state)")
    elif config.method == "lora":
        tips.append("use method 'qlora' (4-bit base)")
    return f"out of GPU memory while {phase}: " + "; ".join(tips) + ". `dpo-tui estimate` predicts the fit."


def classify(exc: BaseException, config: RunConfig, phase: str) -> tuple[str, str, str]:
    """Map an exception to (kind, one-line message, hint)."""
    if isinstance(exc, UserError):  # the operator's input (a dataset not found, offline, ...): no class name
        return ("data" if phase == "loading data" else "config"), exc.summary, exc.hint or "details in trainer.log"
    name = type(exc).__name__
    text = first_line(exc)
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return "oom", f"CUDA out of memory ({phase})", oom_hint(config, phase)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in text:
        return "disk", f"disk full while {phase}", "free space in the runs root; older checkpoints are intact"
    if name in ("DatasetGenerationError", "StopIteration") or "num_samples=0" in text:
        return "data", f"dataset could not be used: {text}", f"run `dpo-tui data check {config.dataset}`"
    if isinstance(exc, (ValueError, TypeError)) and phase in ("loading model", "tokenizing"):
        return "config", f"{name}: {text}", "check the model and settings; details in trainer.log"
    return "crash", f"{name}: {text}", "details in trainer.log"
