"""One side of the chat (a scrolling conversation whose newest answer streams in as Markdown), and the prompt box.

The chat screen owns the conversation; a pane only shows it. The screen calls :meth:`add_prompt`,
:meth:`start_answer`, :meth:`append`, :meth:`finish_answer` and :meth:`show_stats`. The scroll
area is anchored, so it follows a streaming answer while the reader is at the bottom and stays put
once they scroll up (until they scroll back down).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from .inputs import FieldInput


class ChatPane(Vertical):
    DEFAULT_CSS = """
    ChatPane {
        width: 1fr;
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text;
        border-title-style: bold;
        padding: 0;
    }
    ChatPane.-base {
        border: round $secondary;
    }
    ChatPane.-tuned {
        border: round $accent;
    }
    ChatPane.-streaming {
        border-subtitle-color: $warning;
    }
    ChatPane > VerticalScroll {
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    ChatPane .chat-prompt {
        color: $text-muted;
        text-style: bold;
        margin-top: 1;
    }
    ChatPane .chat-prompt.-first {
        margin-top: 0;
    }
    ChatPane Markdown {
        margin: 0;
        padding: 0;
        background: transparent;
    }
    ChatPane .chat-note {
        color: $text-muted;
        text-style: italic;
    }
    ChatPane .chat-error {
        color: $error;
    }
    ChatPane > .chat-stats {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        background: $boost;
    }
    """

    def __init__(self, title: str, *, kind: str = "tuned", adapter_label: str = "", id: str | None = None) -> None:
        super().__init__(id=id, classes=f"-{kind}")
        self.border_title = title
        self.adapter_label = adapter_label
        """The adapter this side answers with (its ``AdapterChoice.label``; empty for the base)."""
        self._answer: Markdown | None = None
        self._stream: MarkdownStream | None = None
        self._text = ""
        self._turns = 0

    def compose(self) -> ComposeResult:
        yield VerticalScroll(classes="chat-log")
        yield Static("", classes="chat-stats")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).anchor()

    @property
    def conversation(self) -> VerticalScroll:
        return self.query_one(VerticalScroll)

    @property
    def answer_text(self) -> str:
        """The text of the newest answer (streamed so far)."""
        return self._text

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    async def add_prompt(self, prompt: str) -> None:
        classes = "chat-prompt" + (" -first" if self._turns == 0 else "")
        self._turns += 1
        await self.conversation.mount(Static(Text("› " + prompt), classes=classes))

    async def start_answer(self) -> None:
        await self._stop_stream()
        self._text = ""
        self._answer = Markdown("", classes="chat-answer")
        await self.conversation.mount(self._answer)
        self._stream = Markdown.get_stream(self._answer)
        self.add_class("-streaming")
        self.border_subtitle = "answering…"

    async def append(self, delta: str) -> None:
        if not delta:
            return
        if self._stream is None:
            await self.start_answer()
        assert self._stream is not None
        self._text += delta
        await self._stream.write(delta)

    async def finish_answer(self, note: str | None = None, error: bool = False) -> None:
        await self._stop_stream()
        self.remove_class("-streaming")
        self.border_subtitle = ""
        if note:
            await self.conversation.mount(Static(Text(note), classes="chat-error" if error else "chat-note"))

    async def _stop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()

    def show_stats(self, text: Text | str) -> None:
        self.query_one(".chat-stats", Static).update(text)

    async def drop_last_turn(self) -> None:
        """Remove the newest prompt and its answer (the prompt is about to be asked again)."""
        await self._stop_stream()
        children = list(self.conversation.children)
        while children and "chat-prompt" not in children[-1].classes:
            await children.pop().remove()
        if children:
            await children.pop().remove()
            self._turns = max(0, self._turns - 1)
        self._answer = None
        self._text = ""
        self.show_stats("")

    async def clear(self) -> None:
        await self._stop_stream()
        await self.conversation.remove_children()
        self._answer = None
        self._text = ""
        self._turns = 0
        self.remove_class("-streaming")
        self.border_subtitle = ""
        self.show_stats("")


class ChatInput(FieldInput):
    """The prompt box: printable keys are text here, so the footer must not offer ``?`` as a key."""

    BINDINGS = [
        # Never fires (the box takes printable keys first); it takes `?` from the footer, which then
        # shows F1 for the keys list. Should it fire, it types what the key means here.
        Binding("question_mark", "insert_text_at_cursor('?')", "?", show=False, id="chat.prompt.text"),
        Binding("escape", "leave", "Leave", id="chat.prompt.leave",
                tooltip="Leave the prompt box (? and 1–4 then work as keys); while an answer streams, stop it"),
    ]

    async def action_leave(self) -> None:
        screen = self.screen
        if getattr(screen, "busy", False):
            await screen.run_action("stop")
            return
        panes = list(screen.query(ChatPane))
        if panes:
            panes[0].conversation.focus()
        else:
            screen.set_focus(None)
