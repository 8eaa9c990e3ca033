"""Stop and resume, as the monitor and the runs overview both offer them.

Blocking calls into ``core.runs`` (signals, waiting for a supervisor), so screens call these from
thread workers and post the returned :class:`Notice`.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from .messages import Notice


def _error(title: str, exc: Exception) -> Notice:
    return Notice(title, exc.render() if isinstance(exc, UserError) else str(exc), "error")


def stop_run(root: Path, run_id: str, now: bool) -> Notice:
    """SIGTERM (graceful: checkpoint at the next step) or, with ``now``, SIGKILL to the run's group."""
    from ..core import runs

    try:
        runs.stop(runs.Run(root / run_id), now=now)
    except (UserError, OSError) as exc:
        return _error("Stop", exc)
    if now:
        return Notice("Stop", f"Killed {run_id}; resume continues from its newest complete checkpoint.")
    return Notice("Stop", f"Stopping {run_id}: it saves a checkpoint at the next step.")


def resume_run(root: Path, run_id: str) -> Notice:
    """Relaunch from the newest complete checkpoint."""
    from ..core import runs

    try:
        ckpt = runs.resume(runs.Run(root / run_id))
    except (UserError, OSError) as exc:
        return _error("Resume", exc)
    return Notice("Resume", f"Resuming {run_id} from {ckpt.path.name}.")
