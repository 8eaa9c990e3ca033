"""The base of every console screen: a worker that fails unexpectedly becomes a notification.

Workers catch the errors an operator can act on (``UserError``, ``OSError``) and post them as
messages. Anything else is a bug; it must still never reach the terminal as a traceback, so it is
shown as one line naming the job, and the screen keeps working.

A screen shown again (a mode switch, a dialog closed) keeps its styles unless something they
depend on changed while it was hidden. Textual re-applies the whole stylesheet to every widget of
the screen on each resume, which also throws away the runs table's rendered rows; that was about
half of a mode switch (``bench/key_latency.py``). Changes to a hidden screen's own widgets (classes,
focus, hover) are styled when they happen, so what can go stale is the app's state that selectors
read from above: its classes, its pseudo-classes (focus, dark/light, ...) and the stylesheet itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import events
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ..services import Services, console_app, services_of

if TYPE_CHECKING:
    from ..app import DpoTuiApp


class ConsoleScreen(Screen[Any]):
    _styled_under: tuple[Any, ...] | None = None
    """The app's style state when this screen was last hidden (None: restyle on resume)."""

    def _app_style_state(self) -> tuple[Any, ...]:
        app = self.app
        return (app._css_update_count, frozenset(app.classes), frozenset(app.get_pseudo_classes()), app.theme)

    def _on_screen_suspend(self) -> None:
        self._styled_under = self._app_style_state()

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Runs before Textual's own resume handler (handlers run from subclass to base).
        if self._styled_under is not None and self._styled_under == self._app_style_state():
            event.refresh_styles = False
        self._styled_under = None

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
