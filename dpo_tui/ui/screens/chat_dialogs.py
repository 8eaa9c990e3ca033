"""The chat screen's dialogs: pick the tuned sides, and edit the generation settings.

Their styles are in ``dpo_tui/ui/app.tcss`` (the chat section).
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

from ...core import chat_protocol as P
from ...core.chat_client import AdapterChoice
from ..widgets.inputs import FieldInput


class ChatSidesDialog(ModalScreen[list[AdapterChoice] | None]):
    """Pick the tuned sides: each run's final adapter and its checkpoints (all on one base model)."""

    # enter and ctrl+s are priority bindings: the selection list would otherwise take enter as
    # "toggle", leaving no key that opens the picked sides.
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="sides.cancel", tooltip="Close without changing the sides"),
        Binding("enter,ctrl+s", "confirm", "Open", id="sides.open", priority=True,
                tooltip="Chat with the picked adapters"),
    ]
    KEYS_HINT = "Space picks or drops · Enter opens the picked · Esc cancels"

    def __init__(self, choices: list[AdapterChoice], chosen: set[str]) -> None:
        super().__init__()
        self.choices = choices
        self.chosen = chosen

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Chat sides: pick adapters to compare with their base", id="sides-title")
            yield Label(self.KEYS_HINT, id="sides-keys")
            items = []
            for i, c in enumerate(self.choices):
                bits = [c.label]
                if c.beta is not None:
                    bits.append(f"β {c.beta:g}")
                if c.rank:
                    bits.append(f"r {c.rank}")
                if c.state and c.state != "finished":
                    bits.append(c.state)
                bits.append(f"base {'tiny-chat' if c.model == 'sample' else Path(c.base_path).name}")
                items.append(Selection("  ".join(bits), i, str(c.path) in self.chosen))
            yield SelectionList[int](*items, id="sides-list")
            yield Static("", id="sides-error")
            with Horizontal(id="sides-buttons"):
                yield Button("Cancel", id="sides-cancel")
                yield Button("Open", variant="primary", id="sides-open")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_confirm(self) -> None:
        picked = [self.choices[i] for i in self.query_one(SelectionList).selected]
        if not picked:
            self.query_one("#sides-error", Static).update("Pick at least one adapter.")
            return
        bases = {c.base_path for c in picked}
        if len(bases) > 1:
            self.query_one("#sides-error", Static).update(
                "These adapters were trained on different base models; side-by-side chat shares one base.")
            return
        self.dismiss(picked)

    @on(Button.Pressed, "#sides-open")
    def _open(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#sides-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ChatSettingsDialog(ModalScreen[P.GenerationSettings | None]):
    """Generation settings for every side."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chat-settings.cancel", tooltip="Close without saving")]
    FIELDS = (
        ("max_new_tokens", "max new tokens"),
        ("temperature", "temperature"),
        ("top_p", "top-p"),
        ("seed", "seed"),
        ("system_prompt", "system prompt"),
        ("stop", "stop strings"),
    )

    def __init__(self, settings: P.GenerationSettings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        s = self.settings
        values = {"max_new_tokens": str(s.max_new_tokens), "temperature": f"{s.temperature:g}", "top_p": f"{s.top_p:g}",
                  "seed": str(s.seed), "system_prompt": s.system_prompt, "stop": " | ".join(s.stop)}
        with Vertical():
            yield Label("Generation settings (stop strings separated by ' | ')", id="settings-title")
            for key, label in self.FIELDS:
                with Horizontal():
                    yield Label(label, classes="field")
                    yield FieldInput(values[key], id=f"set-{key}")
            yield Static("", id="settings-error")
            with Horizontal(id="settings-buttons"):
                yield Button("Cancel", id="settings-cancel")
                yield Button("Save", variant="primary", id="settings-save")

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _value(self, key: str) -> str:
        return self.query_one(f"#set-{key}", Input).value.strip()

    def _save(self) -> None:
        error = self.query_one("#settings-error", Static)
        try:
            settings = P.GenerationSettings(
                max_new_tokens=int(self._value("max_new_tokens")),
                temperature=float(self._value("temperature")),
                top_p=float(self._value("top_p")),
                seed=int(self._value("seed")),
                greedy=self.settings.greedy,
                system_prompt=self.query_one("#set-system_prompt", Input).value,
                stop=[x for x in (p.strip() for p in self._value("stop").split("|")) if x],
            )
        except ValueError as exc:
            error.update(f"Not a number: {exc}")
            return
        problems = settings.problems()
        if problems:
            error.update("; ".join(problems))
            return
        self.dismiss(settings)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._save()

    @on(Button.Pressed, "#settings-save")
    def _save_pressed(self) -> None:
        self._save()

    @on(Button.Pressed, "#settings-cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

