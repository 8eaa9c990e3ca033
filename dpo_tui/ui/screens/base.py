"""The base of every console screen: a worker that fails unexpectedly becomes a notification.

Workers catch the errors an operator can act on (``UserError``, ``OSError``) and post them as
messages. Anything else is a bug; it must still never reach the terminal as a traceback, so it is
shown as one line naming the job, and the screen keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ..services import Services, console_app, services_of

if TYPE_CHECKING:
    from ..app import DpoTuiApp


class ConsoleScreen(Screen[Any]):
    @property
    def services(self) -> Services:
        """The console's injected dependencies (runs root, clock, launcher, ...), typed."""
        return services_of(self)

    @property
    def console(self) -> DpoTuiApp:
        """The console app, typed: its setup state, ``open_monitor``/``open_runs``/``open_chat``, ..."""
        return console_app(self)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        job = event.worker.description or event.worker.name or "a background job"
        self.notify(
            f"Could not {job}: {type(error).__name__}: {error}\n(a bug in dpo-tui; DPO_TUI_DEBUG=1 shows more in the log)",
            title="Internal error",
            severity="error",
            markup=False,
        )
