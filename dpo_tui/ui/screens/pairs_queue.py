"""The A/B queue: label a pairs folder by hand, one prompt at a time, every key saved on the spot.

The prompt is on top, candidates A and B side by side (stacked under 100 columns, where two columns
of prose would be too narrow to read). ``a``/``b`` say which is better, ``t`` a tie, ``space``/``k``
skips, ``u`` undoes the last decision, ``e`` edits the highlighted side (``←``/``→`` move the
highlight) in a text box before accepting: ``ctrl+s`` keeps the edit, ``escape`` drops it.

Every decision goes through ``core.pairs.queue.LabelQueue``, which appends it to ``labels.jsonl``
and fsyncs before returning, on the UI thread: the screen shows the next prompt only once the key is
on disk, so a dropped SSH session loses nothing. Reopening the queue continues at the first prompt
without a decision, with the same progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.widgets import Static, TextArea

from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen

STACK_BELOW = 100
"""Columns under which A and B are stacked instead of side by side."""


def progress_text(decided: int, skipped: int, total: int) -> str:
    """``37/54 · 3 skipped``: prompts handled (decided or skipped) of all, then the skipped ones."""
    text = f"{decided + skipped}/{total}"
    return f"{text} · {skipped} skipped" if skipped else text


class EditBox(TextArea):
    """The text box ``e`` opens on the highlighted side; its own escape cancels the edit."""

    BINDINGS = [
        Binding("ctrl+s", "keep", "Keep edit", id="queue.edit-keep", priority=True, tooltip="Keep the edited text for this side"),
        Binding("escape", "cancel", "Cancel edit", id="queue.edit-cancel", tooltip="Drop the edit; the side stays as it was"),
    ]

    def action_keep(self) -> None:
        screen = self.screen
        if isinstance(screen, PairsQueueScreen):
            screen.keep_edit(self.text)

    def action_cancel(self) -> None:
        screen = self.screen
        if isinstance(screen, PairsQueueScreen):
            screen.close_editor()


class PairsQueueScreen(ConsoleScreen):
    """Pushed on the pairs mode's stack for one pairs folder."""

    MAIN_WIDGET = "#queue-sides"
    BINDINGS = [
        Binding("a", "decide('a')", "A better", id="queue.a", tooltip="A is better: chosen A, rejected B"),
        Binding("b", "decide('b')", "B better", id="queue.b", tooltip="B is better: chosen B, rejected A"),
        Binding("t", "decide('tie')", "Tie", id="queue.tie", tooltip="Neither is better (the prompt is left out of the pairs)"),
        Binding("space,k", "decide('skip')", "Skip", id="queue.skip", key_display="␣",
                tooltip="Skip this prompt for now (left out of the pairs)"),
        Binding("u", "undo", "Undo", id="queue.undo", tooltip="Undo the last decision and show that prompt again"),
        Binding("e", "edit", "Edit", id="queue.edit", tooltip="Edit the highlighted side before accepting it"),
        Binding("left,right", "other_side", "Side", id="queue.side", show=False, tooltip="Highlight the other side (for e)"),
        Binding("escape", "back", "Back", id="queue.back", tooltip="Back to the pair folders (every decision is saved)"),
    ]

    def __init__(self, pairs_dir: Path) -> None:
        super().__init__()
        from ...core.pairs.queue import LabelQueue

        self.pairs_dir = Path(pairs_dir)
        self.queue = LabelQueue(self.pairs_dir)
        self.side = "a"
        """The highlighted side (``e`` edits it)."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="queue-progress")
        with VerticalScroll(id="queue-prompt-box"):
            yield Static(id="queue-prompt")
        with Container(id="queue-sides"):
            with VerticalScroll(id="queue-a", classes="queue-side"):
                yield Static(id="queue-a-text")
            with VerticalScroll(id="queue-b", classes="queue-side"):
                yield Static(id="queue-b-text")
        yield EditBox(id="queue-editor", soft_wrap=True)
        yield ConsoleFooter(compact=True)  # eight keys: compact keeps Quit and Keys on screen at 80 columns

    def on_mount(self) -> None:
        self.query_one("#queue-editor", EditBox).display = False
        self.query_one("#queue-sides").can_focus = True
        self.query_one("#queue-sides").focus()
        self._layout(self.app.size.width)
        self.show_item()

    def on_resize(self) -> None:
        self._layout(self.app.size.width)

    def _layout(self, width: int) -> None:
        self.query_one("#queue-sides").set_class(width < STACK_BELOW, "stacked")

    # --- what is on screen ------------------------------------------------------------------------
    def show_item(self) -> None:
        queue = self.queue
        decided, skipped, total = queue.progress()
        item = queue.current()
        head = Text(f"Label by hand · {self.pairs_dir.name} · ", style="bold")
        head.append(progress_text(decided, skipped, total))
        if item is not None:
            head.append(f" · prompt {item.index + 1}", style="dim")
        self.query_one("#queue-progress", TextPanel).show(head)
        prompt = self.query_one("#queue-prompt", Static)
        a_box, b_box = self.query_one("#queue-a", VerticalScroll), self.query_one("#queue-b", VerticalScroll)
        if item is None:
            if total:
                prompt.update(Text(f"Every prompt is handled ({decided} decided, {skipped} skipped). u undoes the last "
                                   "one; on the Pairs screen, b with the spec `hand` writes pairs.jsonl from these."))
            else:
                prompt.update(Text("No candidates in this folder yet: generation has not written any."))
            a_box.display = b_box.display = False
            self.refresh_bindings()
            return
        a_box.display = b_box.display = True
        prompt.update(Text(item.prompt or "(empty prompt)"))
        edited = queue.edited()
        for side, candidate, box in (("a", item.a, a_box), ("b", item.b, b_box)):
            mark = " · edited" if candidate.id in edited else ""
            box.border_title = f"{side.upper()} · {candidate.words} word{'' if candidate.words == 1 else 's'}{mark}"
            box.set_class(side == self.side, "highlighted")
            self.query_one(f"#queue-{side}-text", Static).update(Text(candidate.text or "(empty)"))
            box.scroll_home(animate=False)
        self.refresh_bindings()

    # --- actions ----------------------------------------------------------------------------------
    @property
    def editing(self) -> bool:
        return bool(self.query_one("#queue-editor", EditBox).display)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("decide", "edit", "other_side"):
            return True if self.queue.current() is not None and not self.editing else None
        if action == "undo":
            return True if self.queue._stack and not self.editing else None
        return True

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        if self.editing:
            return "Finish the edit first: ctrl+s keeps it, escape drops it."
        if action in ("decide", "edit", "other_side"):
            return "Every prompt is handled: nothing to decide."
        if action == "undo":
            return "Nothing to undo."
        return None

    def action_decide(self, decision: str) -> None:
        if self.queue.current() is None or self.editing:
            return
        try:
            self.queue.decide(decision)
        except OSError as exc:  # the decision is not on disk: stay on this prompt
            self.notify(f"Could not save the decision in {self.pairs_dir / 'labels.jsonl'}: {exc.strerror or exc}",
                        title="Label", severity="error", markup=False)
            return
        self.side = "a"
        if self.queue.current() is None:
            self.queue.reload()  # a running generate job may have written more prompts
        self.show_item()

    def action_undo(self) -> None:
        try:
            index = self.queue.undo()
        except OSError as exc:
            self.notify(f"Could not save the undo: {exc.strerror or exc}", title="Label", severity="error", markup=False)
            return
        if index is None:
            self.notify("Nothing to undo.", title="Label", markup=False)
        self.show_item()

    def action_other_side(self) -> None:
        self.side = "b" if self.side == "a" else "a"
        self.show_item()

    def action_edit(self) -> None:
        item = self.queue.current()
        if item is None:
            return
        editor = self.query_one("#queue-editor", EditBox)
        editor.load_text((item.a if self.side == "a" else item.b).text)
        editor.border_title = f"Edit {self.side.upper()} · ctrl+s keeps · escape cancels"
        editor.display = True
        editor.focus()
        self.refresh_bindings()

    def keep_edit(self, text: str) -> None:
        if self.queue.current() is not None:
            self.queue.edit(self.side, text)
        self.close_editor()

    def close_editor(self) -> None:
        self.query_one("#queue-editor", EditBox).display = False
        self.query_one("#queue-sides").focus()
        self.show_item()

    def action_back(self) -> None:
        self.dismiss()

    def leave_text_box(self) -> None:
        self.close_editor()


def open_queue(screen: Any, pairs_dir: Path) -> None:
    """Push the queue for ``pairs_dir``; the pair folders refresh when it closes."""
    refresh = getattr(screen, "refresh_folders", None)
    screen.app.push_screen(PairsQueueScreen(pairs_dir), (lambda _: refresh()) if refresh else None)
