"""Stop and resume, as the monitor and the runs overview both offer them.

:func:`ask_stop` asks first (what a stop does depends on the run's state) and :func:`start_resume`
does not; both run the blocking call into ``core.runs`` (signals, waiting for a supervisor) in a
thread worker of the screen, which gets the outcome as a :class:`Notice` (the app shows it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import UserError
from .messages import Notice

if TYPE_CHECKING:
    from .screens.base import ConsoleScreen


def stop_prompt(run_id: str, state: str) -> tuple[str, str, bool]:
    """(question, detail, hard) of the stop confirmation: a run already stopping is killed (SIGKILL)."""
    if state == "stopping":
        return f"Kill {run_id} now?", "It is already stopping. SIGKILL ends it at once, without a final checkpoint.", True
    if state == "queued":
        return f"Stop {run_id}?", "It has not started: it leaves the queue and is marked stopped (cancelled).", False
    return f"Stop {run_id}?", "The trainer saves a checkpoint at the next step and exits; resume continues from it.", False


def in_flight(screen: ConsoleScreen) -> bool:
    """Whether a stop or resume started from ``screen`` is still running: a key pressed twice must not
    start a second one (two resumes would train the run twice), so the key is ignored until it ends."""
    busy = any(w.group == "run-action" and w.node is screen and not w.is_finished for w in screen.app.workers)
    if busy:
        screen.notify("Still working on the last stop or resume; try again when it has finished.", markup=False)
    return busy


def ask_stop(screen: ConsoleScreen, run_id: str, state: str) -> None:
    """Confirm, then stop ``run_id`` in a thread worker of ``screen``."""
    from .screens.confirm import ConfirmDialog

    if in_flight(screen):
        return
    question, detail, hard = stop_prompt(run_id, state)
    root = screen.services.runs_root

    def answer(yes: bool | None) -> None:
        if yes and not in_flight(screen):
            screen.run_worker(
                lambda: screen.post_message(stop_run(root, run_id, hard)),
                thread=True, group="run-action", exit_on_error=False, description="stop the run",
            )

    screen.app.push_screen(ConfirmDialog(question, detail, yes="Stop"), answer)


def start_resume(screen: ConsoleScreen, run_id: str) -> None:
    """Resume ``run_id`` in a thread worker of ``screen`` (no question: resuming loses nothing)."""
    if in_flight(screen):
        return
    root = screen.services.runs_root
    screen.run_worker(
        lambda: screen.post_message(resume_run(root, run_id)),
        thread=True, group="run-action", exit_on_error=False, description="resume the run",
    )


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
