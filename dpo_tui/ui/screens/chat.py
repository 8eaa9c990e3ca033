"""Chat: the base model and one or more tuned adapters answer the same prompt side by side.

This is the base screen of the ``chat`` mode (``DpoTuiApp.open_chat(run_id)`` preselects a run;
:meth:`ChatScreen.set_adapters` takes adapters from the model screen). One chat worker process
(``python -m dpo_tui.worker.chat``, from ``Services.chat_client``; tests run a fake speaking the same
protocol) holds the base weights once and every adapter by name; each prompt becomes one request
for N sides, answered in one batched generation. Nothing here imports torch.

The thread worker ``chat_events.pump`` reads the worker's events and posts them as
:class:`ChatScreen.WorkerEvents`; ``chat_events.handle`` applies them on the UI thread. Leaving the
chat mode keeps the worker (the model stays loaded) until F10 or ``chat_resident.release_chat``;
quitting closes it. The session's memory is a plain ``ChatSession``, judgements are saved by
``ui/chat_judgements.py``, the dialogs live in ``chat_dialogs.py``, the styles in ``ui/app.tcss``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Static

from ...core import chat_protocol as P
from ...core.chat_client import AdapterChoice, ChatClient
from ..chat_judgements import save_judgement
from ..chat_session import ChatSession
from ..chat_text import empty_text, hint_line, memory_text, pane_titles, settings_line, title_line
from ..messages import Latest, Snapshot
from ..widgets.chat_pane import ChatInput, ChatPane
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.resident_banner import resident_changed
from ..widgets.run_panels import TextPanel
from . import chat_events, chat_resident
from .base import ConsoleScreen
from .chat_dialogs import ChatSettingsDialog, ChatSidesDialog


class ChatScreen(ConsoleScreen):
    """Base and tuned models side by side. Keys: re-ask, greedy, reward, judge, sides, settings."""

    BINDINGS = [
        Binding("escape", "stop", "Stop", id="chat.stop", tooltip="Stop the answer being generated"),
        Binding("enter", "focus_prompt", "Type", id="chat.type", tooltip="Back to the prompt box"),
        Binding("ctrl+r", "reask", "Re-ask", id="chat.reask", show=False, tooltip="Ask the last prompt again with a new seed"),
        Binding("ctrl+g", "toggle_greedy", "Greedy", id="chat.greedy",
                tooltip="Toggle greedy decoding (the most likely answer) / sampling (varies with the seed)"),
        Binding("ctrl+t", "toggle_rewards", "Reward", id="chat.reward", show=False,
                tooltip="Show each answer's implicit DPO reward β·(log π_tuned − log π_base)"),
        Binding("f7", "judge(0)", "Left ✓", id="chat.left", tooltip="Left answer is better: save it as chosen, the right one as rejected"),
        Binding("f8", "judge(1)", "Right ✓", id="chat.right", tooltip="Right answer is better: save it as chosen, the left one as rejected"),
        Binding("ctrl+o", "pick_sides", "Sides", id="chat.sides", tooltip="Pick the tuned sides: runs' adapters and checkpoints"),
        Binding("f6", "settings", "Settings", id="chat.settings", show=False,
                tooltip="Max new tokens, temperature, top-p, seed, system prompt, stop strings"),
        Binding("ctrl+n", "new_chat", "New", id="chat.new", show=False, tooltip="Start a new conversation (follow-ups keep context)"),
        Binding("f9", "restart_worker", "Restart", id="chat.restart", show=False, tooltip="Restart the chat worker"),
        Binding("f10", "release", "Release", id="chat.release",
                tooltip="Stop the chat worker and free its memory (leaving Chat keeps the model loaded until released)"),
    ]


    @dataclass
    class WorkerEvents(Message):
        """Events from the chat worker, in order (consecutive token events of one side merged).

        Posted by the :meth:`_pump` thread worker, at most every ``FLUSH_S`` while tokens stream and
        at once for any other event.
        """

        events: list[dict[str, Any]]
        ticket: int
        """The worker start they come from (``ChatScreen._workers``): events of a worker restarted or
        released since are dropped."""

    @dataclass
    class SidesChosen(Message):
        """What to chat with: a base model and the tuned adapters beside it.

        Posted by the :meth:`_resolve_run` and :meth:`_list_choices` thread workers once they found
        a run's adapter, and on the UI thread by :meth:`set_adapters` and the sides dialog.
        """

        base_path: str
        model: str
        adapters: list[AdapterChoice]

    @dataclass
    class ChoicesListed(Snapshot):
        """Every adapter in the runs root, for the sides dialog (or why they cannot be listed).

        Posted by the :meth:`_list_choices` and :meth:`_resolve_run` thread workers when they finish.
        """

        choices: list[AdapterChoice]
        error: str | None = None

    def __init__(self, *, show_timings: bool = True, device: str = "auto", name: str | None = None,
                 id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.show_timings = show_timings
        """Show tokens/s, time to first token and memory (snapshot tests turn the varying numbers off)."""
        self.device = device
        self.run_id: str | None = None
        self.base_path: str | None = None
        self.model_spec = ""
        self.tuned: list[AdapterChoice] = []
        self.session = ChatSession()
        self.state = "off"
        """off · starting · loading · ready · busy · crashed · error"""
        self.detail = ""
        self.model_info: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}
        self.gen_mode = ""
        self._client: ChatClient | None = None
        self._workers = Latest()

    # --- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="chat-title")
        with Horizontal(id="chat-panes"):
            yield Static(empty_text(), id="chat-empty")
        yield TextPanel(id="chat-settings")
        yield TextPanel(id="chat-hint")
        yield ChatInput(placeholder="Ask every side… (Enter; Esc leaves the box)", id="chat-input")
        # compact, without the palette's entry: the keys that work must fit at 80 columns (ctrl+p still works)
        yield ConsoleFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        chat_resident.register(self.app, self)
        self._refresh_lines()
        self.query_one("#chat-input", Input).focus()
        run_id = self.run_id or getattr(self.app, "chat_run_id", None)
        if run_id:
            self.run_id = run_id
            self._resolve_run(run_id)
        elif self.base_path is None:
            self._list_choices(open_picker=False)

    def on_unmount(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close(timeout=2.0)

    @property
    def runs_root(self) -> Path:
        return Path(self.services.runs_root)

    @property
    def panes(self) -> list[ChatPane]:
        return list(self.query(ChatPane))

    @property
    def busy(self) -> bool:
        return self.session.busy

    @property
    def client(self) -> ChatClient | None:
        return self._client

    # --- choosing what to chat with ---------------------------------------------------------------
    def set_run(self, run_id: str | None) -> None:
        """Preselect ``run_id``'s adapter beside its base model (``DpoTuiApp.open_chat`` calls this)."""
        self.run_id = run_id
        if run_id and self.is_mounted:
            self._resolve_run(run_id)

    def set_adapters(self, base_model: str, adapters: list[tuple[str, str]], beta: float | None = None) -> None:
        """Chat with ``base_model`` and adapters given as ``(label, folder)`` (e.g. from the model screen)."""
        from ...core.config import resolve_model

        base_path = resolve_model(base_model)
        choices = [AdapterChoice(label=label, path=Path(path), beta=beta, model=base_model, base_path=base_path)
                   for label, path in adapters]
        self.post_message(self.SidesChosen(base_path, base_model, choices))

    @work(thread=True, exclusive=True, group="chat-resolve", exit_on_error=False, description="find the run's adapter")
    def _resolve_run(self, run_id: str) -> None:
        from ...core.chat_client import run_adapter
        from ...core.errors import UserError
        from ...core.runs import find_run

        try:
            # The best saved weights, not simply the newest: an over-fit run's last ones answer worst.
            choice = run_adapter(find_run(self.runs_root, run_id), "best")
        except UserError as exc:
            self.post_message(self.ChoicesListed([], error=exc.render()))
            return
        self.post_message(self.SidesChosen(choice.base_path, choice.model, [choice]))

    @work(thread=True, exclusive=True, group="chat-resolve", exit_on_error=False, description="list adapters")
    def _list_choices(self, open_picker: bool = True) -> None:
        from ...core.chat_client import adapter_choices, run_adapter
        from ...core.errors import UserError
        from ...core.runs import Run

        try:
            choices = adapter_choices(self.runs_root)
        except OSError as exc:
            self.post_message(self.ChoicesListed([], error=f"Cannot read the runs root: {exc}"))
            return
        if not open_picker:
            finished = [c for c in choices if c.state == "finished" and "@" not in c.label]
            if finished:
                first = finished[0]
                with contextlib.suppress(UserError, OSError):  # its final adapter stays a good default
                    first = run_adapter(Run(self.runs_root / str(first.run_id)), "best")
                self.post_message(self.SidesChosen(first.base_path, first.model, [first]))
            return
        self.post_message(self.ChoicesListed(choices))

    @on(ChoicesListed)
    def _choices_listed(self, message: ChoicesListed) -> None:
        if message.error:
            self.notify(message.error, title="Chat", severity="warning", markup=False)
            return
        if not message.choices:
            self.notify("No run in the runs root has a LoRA adapter yet.", title="Chat", severity="warning")
            return
        chosen = {str(c.path) for c in self.tuned}
        self.app.push_screen(ChatSidesDialog(message.choices, chosen), self._sides_picked)

    def _sides_picked(self, picked: list[AdapterChoice] | None) -> None:
        if picked:
            self.post_message(self.SidesChosen(picked[0].base_path, picked[0].model, picked))

    @on(SidesChosen)
    async def _sides_chosen(self, message: SidesChosen) -> None:
        await self.configure(message.base_path, message.model, message.adapters)
        for why in filter(None, (a.why for a in message.adapters)):  # picked for the operator: say which and why
            self.notify(why, title="Chat side", markup=False)

    async def configure(self, base_path: str, model: str, adapters: list[AdapterChoice]) -> None:
        """Show the base and ``adapters``; load into the worker whatever it lacks."""
        self._cancel_turn()
        new_base = base_path != self.base_path
        self.base_path, self.model_spec, self.tuned = base_path, model, list(adapters)
        await self._rebuild_panes()
        if self._client is None or not self._client.alive():
            self._start_worker()
            return
        if new_base:
            self._load_model()
        wanted = {a.adapter_name: str(a.path) for a in self.tuned}
        loaded = self.session.loaded
        for name in list(loaded):
            if name not in wanted:
                self.send({"op": P.UNLOAD_ADAPTER, "name": name}, "unload_adapter", name)
                loaded.pop(name, None)
        for a in self.tuned:
            if loaded.get(a.adapter_name) != str(a.path):
                self._load_adapter(a)
        self._refresh_lines()

    async def _rebuild_panes(self) -> None:
        container = self.query_one("#chat-panes", Horizontal)
        await container.remove_children()
        if self.base_path is None:
            self.session.reset(0)
            await container.mount(Static(empty_text(), id="chat-empty"))
            return
        titles = pane_titles(self.base_path, self.model_spec, self.tuned)
        panes = [ChatPane(titles[0], kind="base", id="chat-pane-0")]
        for i, a in enumerate(self.tuned, 1):
            panes.append(ChatPane(titles[i], kind="tuned", adapter_label=a.label, id=f"chat-pane-{i}"))
        self.session.reset(len(panes))
        await container.mount_all(panes)
        self.refresh_bindings()

    # --- the worker -------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        if self.base_path is None:
            return
        old, self._client = self._client, None
        if old is not None:
            old.close(timeout=1.0)
        ticket = self._workers.issue()
        self.session.worker_restarted()
        self.model_info = {}
        self.memory = {}
        client = self.services.chat_client(log_path=self.runs_root / ".logs" / "chat-worker.log")
        try:
            client.start()
        except OSError as exc:
            self.set_state("crashed", f"cannot start the chat worker: {exc}")
            self.notify(f"Cannot start the chat worker: {exc}", title="Chat", severity="error", markup=False)
            return
        self._client = client
        self.set_state("starting", "importing torch…")
        self.run_worker(partial(chat_events.pump, self, client, ticket), thread=True, exclusive=True,
                        group="chat-pump", exit_on_error=False, description="chat worker events")
        self._load_model()
        for a in self.tuned:
            self._load_adapter(a)

    def send(self, request: dict[str, Any], purpose: str, data: Any = None) -> str | None:
        client = self._client
        if client is None:
            return None
        rid = client.send(request)
        self.session.track(rid, purpose, data)
        return rid

    def _load_model(self) -> None:
        assert self._client is not None and self.base_path is not None
        self.set_state("loading", f"loading {Path(self.base_path).name}…")
        self.send({"op": P.LOAD_MODEL, "id": self._client.new_id("m"), "model": self.base_path, "device": self.device},
                   "load_model")

    def _load_adapter(self, adapter: AdapterChoice) -> None:
        assert self._client is not None
        self.send({"op": P.LOAD_ADAPTER, "id": self._client.new_id("a"), "name": adapter.adapter_name,
                    "path": str(adapter.path)}, "load_adapter", adapter)

    # --- events -----------------------------------------------------------------------------------
    @on(WorkerEvents)
    async def _on_worker_events(self, message: WorkerEvents) -> None:
        if not self._workers.is_latest(message.ticket):
            return  # from a worker that was restarted or released since
        before = self._availability()
        for ev in message.events:
            await chat_events.handle(self, ev)
        self._refresh_lines()
        resident_changed(self.app)  # the runs and experiment screens' banners; posts only on a change
        if self._availability() != before:
            self.refresh_bindings()  # the footer recomposes on this: only when a key's availability changed

    def _availability(self) -> tuple[bool, ...]:
        return (self.busy, self.session.can_judge(), bool(self.tuned), bool(self.session.last_prompt),
                self.base_path is not None, self._client is not None)

    def set_state(self, state: str, detail: str = "") -> None:
        """The worker's state (off · starting · loading · ready · busy · crashed · error) for the title line."""
        self.state, self.detail = state, detail
        for s in ("crashed", "error"):
            self.set_class(state == s, f"-{s}")
        if self.is_mounted:
            self._refresh_lines()

    # --- the worker kept loaded -----------------------------------------------------------------------
    def resident(self) -> chat_resident.ResidentChat | None:
        """The loaded worker, for other screens (``chat_resident.resident_chat``); None when none runs."""
        if self._client is None or self.base_path is None:
            return None
        memory = self.memory
        gpu = memory.get("cuda_reserved") or memory.get("cuda_allocated")
        return chat_resident.ResidentChat(
            model=Path(self.base_path).name if self.model_spec != "sample" else "tiny-chat",
            ram_mib=int(memory.get("rss", 0)) // 2**20, gpu_mib=int(gpu) // 2**20 if gpu else None)

    def release_worker(self) -> bool:
        """Stop the worker and free its memory (the panes stay); False when none was running."""
        client, self._client = self._client, None
        if client is None:
            return False
        self._workers.invalidate()
        self.workers.cancel_group(self, "chat-pump")
        client.close(timeout=2.0)
        if self.busy:
            self.session.fail_turn()
        self.session.worker_restarted()
        self.memory = {}
        self.set_state("off", "released: asking loads the model again")
        self.refresh_bindings()
        resident_changed(self.app)
        return True

    # --- asking -----------------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    async def _submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        if await self.ask(prompt):
            event.input.value = ""

    async def ask(self, prompt: str) -> bool:
        """Send ``prompt`` to every side (each continues its own conversation). False when refused."""
        if self.base_path is None:
            self.notify("Pick something to chat with first (Ctrl+O).", title="Chat", severity="warning")
            return False
        if self.busy:
            self.notify("Still answering (Esc stops it).", title="Chat", severity="warning")
            return False
        if self._client is None and self.state == "off":
            self._start_worker()  # released: load the model again; the request waits in the worker's queue
        if self.state in ("crashed", "error") or self._client is None:
            self.notify("The chat worker is not running: F9 restarts it.", title="Chat", severity="warning")
            return False
        for pane in self.panes:
            await pane.add_prompt(prompt)
            await pane.start_answer()
            pane.show_stats("")
        rid = self._client.new_id("g")
        sides = self.session.start_turn(rid, prompt, self.tuned)
        self.send(P.generate_request(rid, sides, self.session.settings), "generate")
        self.set_state("busy")
        self.refresh_bindings()
        self._refresh_lines()
        return True

    # --- status lines -------------------------------------------------------------------------------
    def _refresh_lines(self) -> None:
        if not self.is_mounted:
            return
        title = title_line(self.base_path, self.model_spec, self.model_info, len(self.tuned), self.state, self.detail,
                           self.gen_mode, memory_text(self.memory) if self.show_timings else "")
        self.query_one("#chat-title", TextPanel).show(title)
        self.query_one("#chat-settings", TextPanel).show(settings_line(self.session))
        self.query_one("#chat-hint", TextPanel).show(hint_line(self.session, self._in_box()))

    def _in_box(self) -> bool:
        return isinstance(self.focused, ChatInput)

    def on_descendant_focus(self) -> None:
        self._refresh_lines()

    def on_descendant_blur(self) -> None:
        self._refresh_lines()

    # --- actions ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return True if self.busy else None
        if action == "reask":
            return True if self.session.last_prompt and not self.busy and self.base_path else None
        if action == "judge":
            return True if self.session.can_judge() else None
        if action == "toggle_rewards":
            return True if self.tuned else None
        if action in ("new_chat", "restart_worker"):
            return True if self.base_path else None
        if action == "release":
            return True if self._client is not None else None
        if action == "focus_prompt":
            return None if self._in_box() else True
        return True

    def _cancel_turn(self) -> None:
        turn = self.session.turn
        if self.busy and self._client is not None and turn is not None:
            self._client.cancel(turn.request_id)

    def action_stop(self) -> None:
        self._cancel_turn()

    async def action_reask(self) -> None:
        prompt = self.session.prepare_reask()
        if prompt is None:
            return
        for pane in self.panes:
            await pane.drop_last_turn()  # ask() shows the prompt again
        await self.ask(prompt)

    def action_toggle_greedy(self) -> None:
        settings = self.session.settings
        settings.greedy = not settings.greedy
        self.notify("Greedy: the most likely token, deterministic." if settings.greedy else
                    f"Sampling at temperature {settings.temperature:g}, top-p {settings.top_p:g}.",
                    title="Chat")
        self._refresh_lines()

    def action_toggle_rewards(self) -> None:
        session = self.session
        session.show_rewards = not session.show_rewards
        if session.show_rewards and session.turn is not None and session.turn.done and not session.turn.cancelled:
            chat_events.request_rewards(self)
        self._refresh_lines()

    def action_judge(self, side: int) -> None:
        """Save the newest prompt with side ``side`` (0 left, 1 right) as chosen, the other as rejected."""
        outcome = save_judgement(self.session, side, self.runs_root, self.model_spec or (self.base_path or "model"))
        if outcome is None:
            return
        title = "Judgement" if outcome.path is not None else "Chat"
        self.notify(outcome.message, title=title, severity=outcome.severity, markup=False)
        self._refresh_lines()
        self.refresh_bindings()

    def action_focus_prompt(self) -> None:
        self.query_one("#chat-input", Input).focus()

    def action_release(self) -> None:
        if self.release_worker():
            self.notify("Chat worker stopped; its memory is free. Asking again loads the model.", title="Chat")

    def action_pick_sides(self) -> None:
        self._list_choices(open_picker=True)

    def action_settings(self) -> None:
        def done(settings: P.GenerationSettings | None) -> None:
            if settings is not None:
                self.session.settings = settings
                self._refresh_lines()

        self.app.push_screen(ChatSettingsDialog(self.session.settings), done)

    async def action_new_chat(self) -> None:
        self._cancel_turn()
        panes = self.panes
        for pane in panes:
            await pane.clear()
        self.session.reset(len(panes))
        self._refresh_lines()
        self.refresh_bindings()

    async def action_restart_worker(self) -> None:
        if self.base_path is None:
            return
        if self.busy:
            await chat_events.fail_turn(self, "the chat worker was restarted")
        self._start_worker()
        self.refresh_bindings()
