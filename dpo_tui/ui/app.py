"""The console app: modes, global keys, the command palette, and ``run_app`` (the CLI's entry).

Modes (each keeps its own screen stack, so a run keeps streaming while you look elsewhere):

=========  =========================================================================
setup      Model → Dataset → Experiment (pushed in that order; escape goes back)
runs       every run in the runs root, live
monitor    one run's charts, progress, health and log tail
chat       base vs tuned side by side
pairs      pair folders: generate candidates, label them (A/B queue or a rule), train on them
=========  =========================================================================

Screens are imported when their mode is first shown, so start-up pays only for the first one
(``bench/startup.py`` holds it to 1.5× a minimal Textual app).

The app also watches the runs root (every ``Services.watch_interval`` seconds, in a thread): a run
it saw active that is now finished, failed, crashed or stopped gets a toast, the terminal bell and
an OSC 9 desktop notification (``ui/notify.py`` holds the pure part). Runs that had ended before
the console opened never notify.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.app import App, ScreenStackError
from textual.binding import Binding
from textual.driver import Driver
from textual.screen import Screen
from textual.signal import Signal

from ..core import paths
from .messages import GpuInventoryChanged, Notice, RunStatesRead, SettingsLoaded, Severity
from .notify import TERMINAL, RunState, Transition, osc9, transitions
from .services import Services, default_services
from .setup_state import SetupState

if TYPE_CHECKING:
    from ..core.gpus import GpuInventory
    from ..core.settings import Settings

MODE_SCREENS: dict[str, tuple[str, str]] = {
    "setup": ("models", "ModelScreen"),
    "runs": ("runs", "RunsScreen"),
    "monitor": ("monitor", "MonitorScreen"),
    "chat": ("chat", "ChatScreen"),
    "pairs": ("pairs", "PairsScreen"),
}
MODE_TITLES = {"setup": "Setup: model, dataset, experiment", "runs": "Runs overview", "monitor": "Monitor", "chat": "Chat",
               "pairs": "Pairs"}


def _screen_factory(module: str, name: str) -> Callable[[], Screen[Any]]:
    def make() -> Screen[Any]:
        return getattr(importlib.import_module(f"{__package__}.screens.{module}"), name)()

    return make


# The files that make a folder a run (``core.runs.is_run_dir``; tests/ui checks the two agree).
# Repeated here because importing core.runs costs pydantic (~100 ms) before the first paint.
RUN_MARKERS = ("config.json", "status.json", "events.jsonl")


def run_folder_names(root: Path) -> list[str]:
    """Run folder names, newest first (``core.runs.list_run_dirs`` without its imports)."""
    try:
        children = list(root.iterdir())
    except OSError:
        return []
    names = [child.name for child in children if not child.name.startswith(".") and _looks_like_a_run(child)]
    return sorted(names, reverse=True)


def _looks_like_a_run(child: Path) -> bool:
    """A folder holding a run marker. One we may not look into (another user's 0700 run in a shared root)
    counts too: the runs screen lists it as unreadable instead of the console failing to start."""
    try:
        return child.is_dir() and any((child / marker).exists() for marker in RUN_MARKERS)
    except OSError:
        return True


def has_runs(root: Path) -> bool:
    return bool(run_folder_names(root))


def _bindings_provider() -> type[Any]:
    """The palette provider, imported when the palette first opens (textual.command costs ~25 ms)."""
    from .commands import BindingsProvider

    return BindingsProvider


def severity_level(name: str) -> Severity:
    """A notification severity from :mod:`.notify`'s plain names (anything unknown is information)."""
    if name == "error":
        return "error"
    if name == "warning":
        return "warning"
    return "information"


def read_run_states(root: Path, cache: dict[str, tuple[tuple[int, int], RunState]]) -> tuple[dict[str, RunState], dict[str, tuple[tuple[int, int], RunState]]]:
    """Every run's state, cheaply: an ended run whose status.json is unchanged (same mtime and size)
    is not read again; active runs are read every time (``status(reconcile=False)`` also notices a
    dead trainer as ``crashed``, without writing). Never writes to a run folder."""
    from ..core.errors import UserError
    from ..core.runs import STATUS_FILE, Run

    states: dict[str, RunState] = {}
    new_cache: dict[str, tuple[tuple[int, int], RunState]] = {}
    for name in run_folder_names(root):
        path = root / name
        try:
            st = (path / STATUS_FILE).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (0, 0)
        cached = cache.get(name)
        if cached is not None and cached[0] == stamp and cached[1].state in TERMINAL:
            state = cached[1]
        else:
            try:
                status = Run(path).status(reconcile=False)
                state = RunState(str(status.state), status.kind, status.message)
            except (UserError, OSError):
                state = RunState("unreadable")
        states[name] = state
        new_cache[name] = (stamp, state)
    return states, new_cache


class DpoTuiApp(App[int]):
    """The console. ``services`` carries the runs root, clock, launcher and other dependencies."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses may live anywhere
    TITLE = "dpo-tui"
    ENABLE_COMMAND_PALETTE = True
    # Only the console's own actions: Textual's system commands would add a second Quit and its
    # internals (Maximize, Screenshot, cursor moves); modes are listed by the provider.
    COMMANDS = {_bindings_provider}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, tooltip="Quit the console (runs keep going)"),
        Binding("question_mark,f1", "show_keys", "Keys", id="app.keys", tooltip="Show the keys of this screen"),
        Binding("1,f2", "mode('setup')", "Setup", id="app.mode.setup", show=False, tooltip="Model, dataset and experiment"),
        Binding("2,f3", "mode('runs')", "Runs", id="app.mode.runs", show=False, tooltip="Every run, live"),
        Binding("3,f4", "mode('monitor')", "Monitor", id="app.mode.monitor", show=False, tooltip="The open run's monitor"),
        Binding("4,f5", "mode('chat')", "Chat", id="app.mode.chat", show=False, tooltip="Chat with base and tuned models"),
        Binding("5,f6", "mode('pairs')", "Pairs", id="app.mode.pairs", show=False,
                tooltip="Make preference pairs: generate candidates, label them, train on them"),
        Binding("ctrl+p", "command_palette", "Palette", id="app.palette", show=False, tooltip="Search every action"),
        # Priority, so it comes before a screen's own escape (Back, Clear); it applies only while a
        # text box has focus (check_action), and a box with its own escape (the chat prompt) keeps it.
        # Not in the footer: at 80 columns it would push Quit and Keys off the experiment screen's
        # footer; it hides the screen's "esc Back" there instead, and ? / F1 lists it.
        Binding("escape", "leave_box", "Leave", id="app.leave-box", priority=True, show=False,
                tooltip="Leave the text box (what you typed stays); single-letter keys and digits work again"),
    ]

    def __init__(
        self,
        services: Services,
        *,
        model: str | None = None,
        dataset: str | None = None,
        initial_mode: str | None = None,
    ) -> None:
        # The first mode is chosen before Textual starts, so its screen is composed with the app.
        # (Switching in on_mount would first build Textual's blank default screen, then the real
        # one, and re-parse every stylesheet: ~50 ms of start-up.) Textual reads DEFAULT_MODE in
        # App.__init__, so it is set on the instance first.
        self.DEFAULT_MODE = initial_mode or ("setup" if model is not None or not has_runs(services.runs_root) else "runs")  # type: ignore[misc]
        super().__init__()
        self.services = services
        self.setup = SetupState(model=model, dataset=dataset or "sample")
        self.monitor_run_id: str | None = None
        """The run the monitor mode shows (set by :meth:`open_monitor`)."""
        self.terminal_lost = False
        """Set when the console exits because its terminal went away (hang-up, end-of-file on stdin)."""
        self.chat_run_id: str | None = None
        """The run the chat mode preselects (set by :meth:`open_chat`)."""
        self.gpu_inventory: GpuInventory | None = None
        self.inventory_signal: Signal[GpuInventory | None] = Signal(self, "gpu-inventory")
        self.settings: Settings | None = None
        self._background_started = False
        self.settings_signal: Signal[Settings | None] = Signal(self, "settings")
        """Published once the operator's settings are loaded (model roots, keymap, theme)."""
        self.ready_at: float | None = None
        """perf_counter() when the first screen showed its content."""
        self.run_states: dict[str, RunState] | None = None
        """The run watcher's last snapshot (None until the first one: the baseline, never notified)."""
        self._watch_cache: dict[str, tuple[tuple[int, int], RunState]] = {}
        self._watching = False
        self.rung: list[str] = []
        """Terminal notifications sent (OSC 9 texts), newest last; tests read it."""
        for mode, (module, name) in MODE_SCREENS.items():
            self.add_mode(mode, _screen_factory(module, name))

    # --- start-up -------------------------------------------------------------------------------
    def get_driver_class(self) -> type[Driver]:
        from textual.drivers.linux_driver import LinuxDriver

        driver = super().get_driver_class()
        if driver is LinuxDriver:  # a lost terminal must end the console, not spin on end-of-file
            from .driver import ConsoleDriver

            return ConsoleDriver
        return driver

    def on_mount(self) -> None:
        if not self.is_headless:
            from .driver import install_hangup_handler

            install_hangup_handler(self)
        if not self.services.animate:
            self.animation_level = "none"
        # GPU inventory (pynvml, psutil) and settings (pydantic) load after the first paint: they
        # would otherwise hold the GIL while the first screen is built. A timer covers first
        # screens that never call first_screen_ready (monitor, chat).
        self.set_timer(0.5, self._start_background)

    def _start_background(self) -> None:
        if self._background_started:
            return
        self._background_started = True
        self._refresh_gpus()
        if self.services.gpu_refresh_interval > 0:
            self.set_interval(self.services.gpu_refresh_interval, self._refresh_gpus, name="gpu-refresh")
        self._load_settings()
        if self.services.watch_interval > 0:
            self.watch_runs()
            self.set_interval(self.services.watch_interval, self.watch_runs, name="run-watch")

    # --- run outcome notifications --------------------------------------------------------------
    def watch_runs(self) -> None:
        """Take a snapshot of the runs root; runs that ended since the last one notify."""
        if self._watching:
            return  # the last snapshot is still being read: never let an older one land after a newer one
        self._watching = True
        self._read_run_states(self.services.runs_root, self._watch_cache)

    @work(thread=True, group="run-watch", exit_on_error=False, description="watch the runs")
    def _read_run_states(self, root: Path, cache: dict[str, tuple[tuple[int, int], RunState]]) -> None:
        try:
            states, new_cache = read_run_states(root, cache)
        except OSError:
            self.post_message(RunStatesRead(None, cache))  # the root went away: try again next time
            return
        except BaseException:
            self.post_message(RunStatesRead(None, cache))  # a bug: the next tick still runs
            raise
        self.post_message(RunStatesRead(states, new_cache))

    @on(RunStatesRead)
    def _run_states_read(self, message: RunStatesRead) -> None:
        self._watching = False
        if message.states is None:
            return
        previous, self.run_states = self.run_states, message.states
        self._watch_cache = message.cache
        if previous is None:
            return  # the baseline: runs that ended before the console opened are old news
        for change in transitions(previous, message.states):
            self.announce(change)

    def announce(self, change: Transition) -> None:
        """A toast, the terminal bell, and a desktop notification (OSC 9) for a run that ended."""
        self.notify(change.text(), title=change.title(), severity=severity_level(change.severity), markup=False)
        self.ring(f"dpo-tui: {change.text()}")

    def ring(self, text: str) -> None:
        """Ring the bell and send ``text`` as an OSC 9 desktop notification (tmux-wrapped under tmux)."""
        self.rung.append(text)
        del self.rung[:-20]
        self.bell()
        if not self.is_headless and self._driver is not None:
            self._driver.write(osc9(text, tmux=bool(os.environ.get("TMUX"))))

    @work(thread=True, exclusive=True, group="gpus", exit_on_error=False, description="query the GPUs")
    def _refresh_gpus(self) -> None:
        try:
            inventory = self.services.gpu_inventory()
        except Exception as exc:  # noqa: BLE001 - a broken driver must not take the console down
            self.post_message(Notice("GPUs", f"Cannot read the GPU inventory: {exc}", "warning"))
            return
        self.post_message(GpuInventoryChanged(inventory))

    @on(GpuInventoryChanged)
    def _inventory_changed(self, message: GpuInventoryChanged) -> None:
        self.gpu_inventory = message.inventory
        self.inventory_signal.publish(message.inventory)

    @work(thread=True, exclusive=True, group="settings", exit_on_error=False, description="read settings")
    def _load_settings(self) -> None:
        from ..core.errors import UserError

        try:
            settings = self.services.load_settings()
        except UserError as exc:
            self.post_message(Notice("Settings", exc.render(), "warning"))
            return
        self.post_message(SettingsLoaded(settings))

    @on(SettingsLoaded)
    def _settings_loaded(self, message: SettingsLoaded) -> None:
        self._apply_settings(message.settings)

    def _apply_settings(self, settings: Settings | None) -> None:
        self.settings = settings
        self.settings_signal.publish(settings)
        if settings is None:
            return
        keymap = getattr(settings, "keymap", None) or {}
        if keymap:
            self.set_keymap(dict(keymap))
        theme = getattr(settings, "theme", None)
        if theme and theme in self.available_themes:
            self.theme = theme

    @on(Notice)
    def _notice(self, message: Notice) -> None:
        self.notify(message.text, title=message.title, severity=message.severity, markup=False)

    # --- navigation -----------------------------------------------------------------------------
    def action_mode(self, mode: str) -> None:
        if mode != self.current_mode:
            self.switch_mode(mode)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "mode" and parameters and parameters[0] == self.current_mode:
            return None
        if action == "leave_box":
            return self._box_to_leave() is not None
        return True

    def _box_to_leave(self) -> Any:
        """The console screen whose focused text box escape should leave (None: escape means what
        the screen or the dialog says)."""
        from .screens.base import ConsoleScreen, is_text_box

        try:
            screen = self.screen
        except ScreenStackError:  # between modes: nothing has focus
            return None
        if not isinstance(screen, ConsoleScreen):
            return None  # a dialog: escape cancels it
        focused = screen.focused
        if focused is None or not is_text_box(focused) or "escape" in focused._bindings.key_to_bindings:
            return None
        return screen

    def on_key(self, event: events.Key) -> None:
        """A key that reached the app unhandled because its action is not possible now (dimmed in the
        footer) says why, when the screen can tell (``ConsoleScreen.why_not``)."""
        try:
            screen = self.screen
        except ScreenStackError:
            return
        active = screen.active_bindings.get(event.key)
        why_not = getattr(active.node, "why_not", None) if active is not None and not active.enabled else None
        if why_not is None or active is None:
            return
        _, action, parameters = self._parse_action(active.binding.action, active.node)
        text = why_not(action, parameters)
        if text:
            self.notify(text, title=active.binding.description, severity="warning", markup=False)

    def action_leave_box(self) -> None:
        screen = self._box_to_leave()
        if screen is not None:
            screen.leave_text_box()

    def _mode_base(self, mode: str) -> Screen[Any]:
        """The base screen of ``mode`` (creating the mode's stack if needed)."""
        if self.current_mode != mode:
            self.switch_mode(mode)
        return self.screen_stack[0]

    def open_monitor(self, run_id: str) -> None:
        """Switch to the monitor mode, following ``run_id``."""
        self.monitor_run_id = run_id
        base = self._mode_base("monitor")
        if getattr(base, "run_id", None) != run_id and hasattr(base, "show_run"):
            base.show_run(run_id)

    def open_runs(self, group: str | None = None) -> None:
        """Switch to the runs mode; with ``group``, filter to that group and select its runs."""
        base = self._mode_base("runs")
        if group and hasattr(base, "show_group"):
            base.show_group(group)

    def open_chat(self, run_id: str | None) -> None:
        """Switch to the chat mode with ``run_id``'s adapter preselected.

        The chat screen (``ui/screens/chat.py``) implements ``set_run(run_id)``; it may also read
        ``app.chat_run_id`` when it mounts.
        """
        self.chat_run_id = run_id
        base = self._mode_base("chat")
        if hasattr(base, "set_run"):
            base.set_run(run_id)

    def open_pairs(self, run_id: str, model: str | None = None) -> None:
        """Switch to the pairs mode with the generate form sampling from ``run_id``'s adapter (round two)."""
        from .screens.pairs import open_pairs_form

        open_pairs_form(self, run_id, model)

    def first_screen_ready(self) -> None:
        """Called once by the first screen when its content is on screen (``bench/startup.py`` hooks it)."""
        if self.ready_at is None:
            self.ready_at = time.perf_counter()
            self.call_after_refresh(self._start_background)

    def action_show_keys(self) -> None:
        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))


def run_app(runs_dir: str | None = None, model: str | None = None, dataset: str | None = None) -> int:
    """Open the console on the runs root (``--runs-dir``, else ``$DPO_TUI_HOME/runs``). Returns an exit code."""
    root = paths.runs_root(runs_dir)
    app = DpoTuiApp(default_services(root), model=model, dataset=dataset)
    result = app.run()
    return int(result or 0)
