"""The base of every console screen: a worker that fails unexpectedly becomes a notification, and
escape leaves a text box for the screen's main widget.

Workers catch the errors an operator can act on (``UserError``, ``OSError``) and post them as
messages. Anything else is a bug; it must still never reach the terminal as a traceback, so it is
shown as one line naming the job, and the screen keeps working.

While a text box has focus, printable keys are text (Textual drops the bindings a focused ``Input``
or ``TextArea`` would consume), so digits and ``?`` do not switch modes there; the header and the
footer show the keys that do work (F-keys, ``ctrl`` keys). The app's priority ``escape`` binding
(``app.leave-box``) calls :meth:`ConsoleScreen.leave_text_box`, so the single-letter keys are one
key away on every screen.

A screen shown again (a mode switch, a dialog closed) keeps its styles unless something they
depend on changed while it was hidden. Textual re-applies the whole stylesheet to every widget of
the screen on each resume, which also throws away the runs table's rendered rows; that was about
half of a mode switch (``bench/key_latency.py``). Changes to a hidden screen's own widgets (classes,
focus, hover) are styled when they happen, so what can go stale is the app's state that selectors
read from above: its classes, its pseudo-classes (focus, dark/light, ...) and the stylesheet itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Input, TextArea
from textual.worker import Worker, WorkerState

from ..services import Services, console_app, services_of

if TYPE_CHECKING:
    from ..app import DpoTuiApp


def is_text_box(widget: Widget | None) -> bool:
    """A widget that takes printable keys as text (where single-letter keys and digits cannot act)."""
    return isinstance(widget, (Input, TextArea))


class RowTable(DataTable[Any]):
    """A row-cursor table where Home and End move the cursor to the first and last row.

    DataTable's own Home/End scroll sideways only, so the highlighted row (the one every key acts
    on) stayed where it was while the view jumped: ``c`` then acted on a row out of sight.
    PageUp/PageDown already move the cursor.
    """

    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]


class ConsoleScreen(Screen[Any]):
    MAIN_WIDGET: ClassVar[str | None] = None
    """Selector of the widget escape moves to from a text box (None: the nearest focusable
    container around the box, else the first focusable widget that is not a text box)."""
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

    def main_widget(self) -> Widget | None:
        """Where the focus goes when escape leaves a text box."""
        if self.MAIN_WIDGET is not None:
            return self.query_one(self.MAIN_WIDGET)
        focused = self.focused
        if focused is not None:
            for ancestor in focused.ancestors:
                if ancestor is self:
                    break
                if isinstance(ancestor, Widget) and ancestor.focusable and not is_text_box(ancestor):
                    return ancestor
        return next((w for w in self.focus_chain if not is_text_box(w)), None)

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        """Why ``action`` is not possible now (its ``check_action`` said None: dimmed in the footer).

        Pressing a dimmed key shows this as a toast (``DpoTuiApp.on_key``), so no key does nothing
        in silence. None: say nothing.
        """
        return None

    def leave_text_box(self) -> None:
        """Escape in a text box: keep what was typed, move the focus to :meth:`main_widget`."""
        target = self.main_widget()
        if target is not None:
            target.focus()
        else:
            self.set_focus(None)

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
