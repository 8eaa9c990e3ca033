"""The runs overview's destructive actions, each asked first: delete a run, cancel a β ladder.

The question is a :class:`ConfirmDialog`; the work runs in a thread worker of the screen (it
signals processes and removes folders) and ends in a :class:`Notice`, which the screen answers by
re-listing. Stop and resume are shared with the monitor (``ui/run_actions.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core.errors import UserError
from ...core.run_states import ACTIVE_STATES
from ..messages import Notice

if TYPE_CHECKING:
    from pathlib import Path

    from ...core.runs import RunSummary
    from .base import ConsoleScreen


def ask_delete(screen: ConsoleScreen, summary: RunSummary) -> None:
    """Refuse an active run (stop it first); else confirm and delete its folder."""
    from .confirm import ConfirmDialog

    run_id = summary.id
    if summary.state in ACTIVE_STATES:
        screen.notify(f"{run_id} is {summary.state}: stop it first (s), then delete it.", title="Delete", severity="error", markup=False)
        return
    detail = "This removes the run folder with its checkpoints, adapter and logs. It cannot be undone."
    path = screen.services.runs_root / run_id

    def answer(yes: bool | None) -> None:
        if yes:
            screen.run_worker(
                lambda: screen.post_message(delete_run(path)),
                thread=True, group="runs-action", exit_on_error=False, description="delete a run",
            )

    screen.app.push_screen(ConfirmDialog(f"Delete {run_id}?", detail, yes="Delete"), answer)


def delete_run(path: Path) -> Notice:
    """Delete the run folder at ``path`` (blocking); the outcome as a notice."""
    from ...core import runs

    run_id = path.name
    try:
        runs.delete(runs.Run(path))
    except UserError as exc:
        text = exc.render()
        if "unreadable" in exc.summary:
            text += f"\nIts status cannot be read, so whether it still runs is unknown. If it does not: rm -r {path}"
        return Notice("Delete", text, "error")
    except OSError as exc:
        return Notice("Delete", f"Cannot delete {run_id}: {exc.strerror or exc}", "error")
    return Notice("Delete", f"Deleted {run_id}.")


def ask_cancel_group(screen: ConsoleScreen, group: str, summaries: list[RunSummary]) -> None:
    """Confirm, then stop the group's running runs and cancel its queued ones (``dpo-tui ladder --cancel``)."""
    from .confirm import ConfirmDialog

    members = [s for s in summaries if s.group == group and s.state in ACTIVE_STATES]
    if not members:
        screen.notify(f"Nothing to cancel: no run of '{group}' is queued or running.", title="Cancel ladder", markup=False)
        return
    queued = [s.id for s in members if s.state == "queued"]
    running = [s.id for s in members if s.state != "queued"]
    lines = []
    if running:
        lines.append(f"Stops {', '.join(running)} (it saves a checkpoint at the next step).")
    if queued:
        lines.append(f"Cancels {len(queued)} queued run{'s' if len(queued) != 1 else ''}.")

    def cancel() -> None:
        from ...core.ladder import cancel_group

        done, problems = cancel_group(members)
        if problems:
            screen.post_message(Notice("Cancel ladder", "\n".join(problems), "error"))
        screen.post_message(Notice("Cancel ladder", f"'{group}': stopping or cancelling {len(done)} run{'s' if len(done) != 1 else ''}."))

    def answer(yes: bool | None) -> None:
        if yes:
            screen.run_worker(cancel, thread=True, group="runs-action", exit_on_error=False, description="cancel a ladder")

    screen.app.push_screen(ConfirmDialog(f"Cancel the ladder '{group}'?", " ".join(lines), yes="Cancel ladder", no="Keep"), answer)
