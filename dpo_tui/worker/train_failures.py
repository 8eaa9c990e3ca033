"""How a failed training attempt is described: a kind, one line for the operator, and a hint.

:class:`RunFailed` is raised for failures the trainer recognises itself (bad data, a missing chat
template, an unknown LoRA target); :func:`classify` maps any other exception the same way. The full
traceback goes to trainer.log only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from ..core.config import RunConfig
from ..core.errors import UserError, first_line
from ..core.runs import Run

# Room kept in the run folder for the writes that record a failure (status.json, the terminal event,
# the traceback in trainer.log): on a disk that fills up they would fail too, and the run would read
# as a host crash. Freed before those writes, and at the end of every attempt.
RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 512 * 1024
# Below this much free space any failure is taken for a full disk: a full disk surfaces under many
# exception types (torch's zip writer says "unexpected pos"), so the type alone cannot tell.
LOW_FREE_BYTES = 1 << 20


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


def make_reserve(run_dir: Path) -> None:
    """Set aside :data:`RESERVE_BYTES` in the run folder (nothing if the disk is already too full)."""
    path = run_dir / RESERVE_FILE
    try:
        with open(path, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()


def release_reserve(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / RESERVE_FILE).unlink()


def tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def disk_full(exc: BaseException, run: Run, phase: str, checkpoint_estimate: int) -> tuple[str, str, str] | None:
    """(kind ``disk``, message, hint) when the run folder's filesystem is too full for what was being
    written, judged by the free space rather than the exception's type; ``None`` otherwise.

    Call it before anything is cleaned up: the partial checkpoint still shows how far the save got.
    ``checkpoint_estimate`` is what one checkpoint is expected to take (0 when unknown).
    """
    try:
        free = shutil.disk_usage(run.path).free
        partial = [c for c in run.checkpoints() if not c.complete]
        complete = [c for c in run.checkpoints() if c.complete]
    except OSError:
        return None
    written = sum(tree_size(c.path) for c in partial)
    # A complete checkpoint is the best measure of the next one; before the first, the estimate.
    needed = max(tree_size(complete[-1].path) if complete else checkpoint_estimate, written)
    enospc = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in first_line(exc)
    if not enospc and free >= LOW_FREE_BYTES and not (partial and free < needed - written):
        return None
    what = f"saving {partial[-1].path.name}" if partial else phase
    where = mount_point(run.path)
    message = (f"disk full while {what}: {_mib(free)} free on {where}"
               + (f", a checkpoint needs about {_mib(needed)}" if needed else ""))
    hint = (f"free space on {where}, at least {_mib(max(needed - free, 0) + RESERVE_BYTES)} (or move the runs root), then "
            f"`dpo-tui resume {run.id}`; " + ("the last complete checkpoint is kept" if complete else "no checkpoint was complete yet"))
    return "disk", message, hint


def remove_partial_checkpoints(run: Run) -> None:
    """A save cut short leaves a checkpoint nothing can resume from; removing it frees its space too."""
    with contextlib.suppress(OSError):
        for checkpoint in run.checkpoints():
            if not checkpoint.complete:
                shutil.rmtree(checkpoint.path, ignore_errors=True)
