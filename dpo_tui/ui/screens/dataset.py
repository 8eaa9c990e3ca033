"""Dataset screen: pick a file, folder or dataset id; read its lint report; browse pairs; see token lengths.

Work off the UI thread, in order, each step a thread worker that posts one message:

1. ``_load`` — ``core.datasets.load_preference_data`` → :class:`DataLoaded` (report + normalized rows);
2. ``_tokenize`` — ``core.tokenstats`` with the chosen model's tokenizer → :class:`TokensCounted`
   (length histogram, truncation at the current ``max_length``; findings join the report);
3. ``_preview`` — one pair exactly as the trainer tokenizes it → :class:`PreviewReady`.

A newer request cancels an older one (``exclusive``), and a late message for an old source is
ignored, so the screen never shows one dataset's numbers under another's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from ...core import paths
from ...core.errors import UserError, first_line
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.inputs import FieldInput
from ..widgets.pairs import histogram_renderable, pair_renderable, plain_pair_renderable
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen


def sample_datasets() -> list[tuple[str, str, Path]]:
    """(spec, label, path) of the bundled datasets."""
    return [
        ("sample", "sample: concise-answer pairs (standard)", paths.sample_dataset_path()),
        (str(paths.sample_conversational_dataset_path()), "sample: the same pairs, conversational", paths.sample_conversational_dataset_path()),
    ]


def summary_text(report: Any) -> Text:
    if report is None:
        return Text("")
    text = Text()
    ok = report.ok
    text.append("✓ usable" if ok else "✗ not usable", style="bold" if ok else "bold reverse")
    text.append(f"  {report.rows_usable} of {report.rows_total} rows · {report.shape} ({report.format})")
    if report.errors:
        text.append(f" · {len(report.errors)} kinds of error")
    if report.warnings:
        text.append(f" · {len(report.warnings)} warnings")
    if report.decisions:
        text.append("\n" + "; ".join(report.decisions), style="dim")
    return text


FINDING_MIN_WIDTH = 24
_FINDING_FIXED = (("", "severity", 7), ("lines", "lines", 14), ("field", "field", 9))


def finding_width(screen_width: int) -> int:
    """The finding column's width: what the other columns (with DataTable's padding, both sides) and a
    scrollbar leave of the screen."""
    used = sum(width + 2 for _, _, width in _FINDING_FIXED) + 2 + 2
    return max(FINDING_MIN_WIDTH, (screen_width or 80) - used)


def add_finding_columns(table: DataTable[Any], message_width: int) -> None:
    for label, key, width in _FINDING_FIXED:
        table.add_column(label, key=key, width=width)
    table.add_column("finding", key="message", width=message_width)


def finding_lines(finding: Any) -> str:
    lines = list(getattr(finding, "lines", []) or [])
    if not lines:
        return "–"
    shown = ",".join(str(n) for n in lines[:4])
    count = getattr(finding, "count", len(lines))
    return shown + (f" (+{count - len(lines[:4])})" if count > len(lines[:4]) else "")


class DatasetScreen(ConsoleScreen):
    """Second setup step. ``ctrl+n`` goes on to the experiment once the data is usable."""

    MAIN_WIDGET = "#dataset-samples"
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: experiment", id="dataset.next", priority=True, tooltip="Continue to the experiment"),
        Binding("escape", "back", "Back", id="dataset.back", tooltip="Back to the model"),
        Binding("o", "focus_source", "Open", id="dataset.open", tooltip="Type a file, folder or dataset id"),
        Binding("r", "tab('report')", "Report", id="dataset.report", tooltip="The lint report"),
        Binding("p", "tab('pairs')", "Pairs", id="dataset.pairs", tooltip="Browse the pairs as the trainer sees them"),
        Binding("l", "tab('lengths')", "Lengths", id="dataset.lengths", tooltip="Token-length histogram"),
        Binding("left_square_bracket", "pair(-1)", "Prev pair", id="dataset.prev", tooltip="Previous pair"),
        Binding("right_square_bracket", "pair(1)", "Next pair", id="dataset.next-pair", tooltip="Next pair"),
    ]

    class DataLoaded(Message):
        def __init__(self, source: str, report: Any, rows: list[dict[str, Any]], error: str | None = None) -> None:
            super().__init__()
            self.source, self.report, self.rows, self.error = source, report, rows, error

    class TokensCounted(Message):
        def __init__(self, source: str, model: str, tokens: dict[str, Any] | None, tokenizer: Any, findings: list[Any], error: str | None = None) -> None:
            super().__init__()
            self.source, self.model, self.tokens, self.tokenizer, self.findings, self.error = source, model, tokens, tokenizer, findings, error

    class PreviewReady(Message):
        def __init__(self, source: str, index: int, renderable: Any) -> None:
            super().__init__()
            self.source, self.index, self.renderable = source, index, renderable

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.report: Any = None
        self.rows: list[dict[str, Any]] = []
        self.tokenizer: Any = None
        self.tokens: dict[str, Any] | None = None
        self.token_error: str | None = None
        self.pair_index = 0
        self.loading = False
        self.token_findings: list[Any] = []
        self._finding_width = FINDING_MIN_WIDTH
        self.counted_for: tuple[str, int, int] | None = None
        """(model, max_length, batch size) the token statistics were computed for."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="setup-steps")
        yield FieldInput(placeholder="dataset: a .jsonl/.json/.csv/.parquet file, a folder, or a hub id; enter loads", id="dataset-source", compact=True)
        yield OptionList(*[Option(label, id=spec) for spec, label, _ in sample_datasets()], id="dataset-samples", compact=True)
        yield TextPanel(id="dataset-summary")
        with TabbedContent(id="dataset-tabs", initial="report"):
            with TabPane("Report", id="report"):
                table: DataTable[Any] = DataTable(id="dataset-findings", cursor_type="row", zebra_stripes=True)
                add_finding_columns(table, FINDING_MIN_WIDTH)
                yield table
            with TabPane("Pairs", id="pairs"), VerticalScroll(id="pair-scroll"):
                yield Static("", id="pair-view")
            with TabPane("Lengths", id="lengths"), VerticalScroll():
                yield Static("", id="length-view")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        setup = self.console.setup
        self.query_one("#setup-steps", TextPanel).show(self._steps())
        source = setup.dataset or "sample"
        self.query_one("#dataset-source", Input).value = "" if source == "sample" else source
        self.load(source)
        self.query_one("#dataset-samples", OptionList).focus()

    def _steps(self) -> Text:
        setup = self.console.setup
        text = Text("Setup  ")
        text.append(f"1 model: {setup.model_label()} ✓", style="dim")
        text.append("  →  ")
        text.append("2 dataset", style="bold reverse")
        text.append("  →  3 experiment", style="dim")
        return text

    # --- loading ------------------------------------------------------------------------------
    def load(self, source: str) -> None:
        source = source.strip() or "sample"
        self.source = source
        self.report = None
        self.rows = []
        self.tokens = None
        self.tokenizer = None
        self.token_error = None
        self.token_findings = []
        self.pair_index = 0
        self.loading = True
        self.console.setup.dataset = source
        self.console.setup.data_report = None
        self.query_one("#dataset-summary", TextPanel).show(Text(f"reading {source}…", style="dim"))
        self.query_one("#dataset-findings", DataTable).clear()
        self.query_one("#pair-view", Static).update("")
        self.query_one("#length-view", Static).update("")
        self.refresh_bindings()
        self._load(source)

    @work(thread=True, exclusive=True, group="dataset-load", exit_on_error=False, description="read the dataset")
    def _load(self, source: str) -> None:
        from ...core.config import resolve_dataset
        from ...core.data import load_preference_data

        try:
            loaded = load_preference_data(resolve_dataset(source))
        except UserError as exc:
            self.post_message(self.DataLoaded(source, None, [], exc.render()))
            return
        except OSError as exc:
            self.post_message(self.DataLoaded(source, None, [], f"cannot read {source}: {exc.strerror or exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - a worker that dies silently leaves the screen "reading…" forever
            self.post_message(self.DataLoaded(source, None, [], f"cannot read {source}: {type(exc).__name__}: "
                                              f"{first_line(exc)}"))
            return
        self.post_message(self.DataLoaded(source, loaded.report, loaded.rows))

    @on(DataLoaded)
    def _data_loaded(self, message: DataLoaded) -> None:
        if message.source != self.source:
            return
        self.loading = False
        if message.error:
            self.query_one("#dataset-summary", TextPanel).show(Text(message.error.splitlines()[0], style="bold"))
            self.notify(message.error, title="Dataset", severity="error", markup=False)
            self.refresh_bindings()
            return
        self.report, self.rows = message.report, message.rows
        self.console.setup.data_report = message.report
        self._show_report()
        self.refresh_bindings()
        self._count_tokens()
        self._show_lengths()
        self.show_pair(0)

    def _count_tokens(self) -> None:
        setup = self.console.setup
        self.counted_for = (setup.model or "sample", setup.max_length(), setup.batch_size())
        self._tokenize(self.source or "sample", *self.counted_for)

    def on_screen_resume(self) -> None:
        """Back from the experiment: a new max_length or batch size changes truncation and padding."""
        if not self.is_mounted or self.report is None or self.counted_for is None:
            return
        setup = self.console.setup
        if self.counted_for != (setup.model or "sample", setup.max_length(), setup.batch_size()):
            self.tokenizer = None
            self._count_tokens()

    def _show_report(self) -> None:
        report = self.report
        self.query_one("#dataset-summary", TextPanel).show(summary_text(report))
        table = self.query_one("#dataset-findings", DataTable)
        table.clear(columns=True)
        # The finding column takes the room left and long findings wrap onto more rows: a finding cut at
        # the screen edge ("no learnin") hides what to fix.
        self._finding_width = finding_width(self.size.width)
        add_finding_columns(table, self._finding_width)
        if report is None:
            return
        for i, finding in enumerate(report.findings):
            severity = Text("error", style="bold reverse") if finding.severity == "error" else Text("warning", style="bold")
            table.add_row(severity, finding_lines(finding), finding.field or "", Text(finding.message), key=f"f{i}", height=None)
        if not report.findings:
            table.add_row(Text("ok"), "–", "", "no problems found", key="ok")

    def on_resize(self) -> None:
        if self.report is not None and finding_width(self.size.width) != self._finding_width:
            self._show_report()

    @work(thread=True, exclusive=True, group="dataset-tokens", exit_on_error=False, description="count tokens")
    def _tokenize(self, source: str, model: str, max_length: int, batch_size: int) -> None:
        from ...core.config import resolve_dataset
        from ...core.data import DataReport
        from ...core.tokenstats import ChatTokenizer, add_token_stats

        try:
            tokenizer = ChatTokenizer.from_model(model)
            scratch = DataReport(source=source)
            tokens = add_token_stats(scratch, resolve_dataset(source), tokenizer, max_length=max_length, batch_size=batch_size)
        except UserError as exc:
            self.post_message(self.TokensCounted(source, model, None, None, [], exc.render()))
            return
        except OSError as exc:
            self.post_message(self.TokensCounted(source, model, None, None, [], str(exc)))
            return
        self.post_message(self.TokensCounted(source, model, tokens, tokenizer, scratch.findings))

    @on(TokensCounted)
    def _tokens_counted(self, message: TokensCounted) -> None:
        if message.source != self.source:
            return
        self.tokens, self.tokenizer = message.tokens, message.tokenizer
        self.token_error = message.error.splitlines()[0] if message.error else None
        if self.report is not None:
            # Token findings depend on max_length: replace the previous count's, never stack them.
            for finding in self.token_findings:
                for bucket in (self.report.errors, self.report.warnings):
                    if finding in bucket:
                        bucket.remove(finding)
            self.token_findings = list(message.findings)
            for finding in self.token_findings:
                (self.report.errors if finding.severity == "error" else self.report.warnings).append(finding)
            if message.tokens is not None:
                self.report.stats["tokens"] = message.tokens
            self._show_report()
            self.refresh_bindings()
        self._show_lengths()
        self.show_pair(self.pair_index)

    def _show_lengths(self) -> None:
        chars = (self.report.stats.get("chars") if self.report is not None else None) or {}
        renderable = histogram_renderable(self.tokens, chars, width=max(40, self.size.width - 4))
        if self.token_error:
            renderable = Text(f"tokens: {self.token_error}\n", style="dim") + renderable if isinstance(renderable, Text) else renderable
        self.query_one("#length-view", Static).update(renderable)

    # --- pairs ----------------------------------------------------------------------------------
    def show_pair(self, index: int) -> None:
        if not self.rows:
            self.query_one("#pair-view", Static).update(Text("No usable pairs.", style="dim") if self.report else "")
            return
        self.pair_index = max(0, min(index, len(self.rows) - 1))
        row = self.rows[self.pair_index]
        if self.tokenizer is None:
            reason = self.token_error or "counting tokens…"
            self.query_one("#pair-view", Static).update(plain_pair_renderable(row, self.pair_index, len(self.rows), reason))
            return
        self._preview(self.source or "", self.pair_index, row, self.tokenizer, self.console.setup.max_length())

    @work(thread=True, exclusive=True, group="dataset-preview", exit_on_error=False, description="render a pair")
    def _preview(self, source: str, index: int, row: dict[str, Any], tokenizer: Any, max_length: int) -> None:
        from ...core.tokenstats import TemplateError, preview_pair

        try:
            preview = preview_pair(row, tokenizer, max_length)
            renderable = pair_renderable(preview, index, len(self.rows))
        except TemplateError as exc:
            renderable = plain_pair_renderable(row, index, len(self.rows), f"the chat template refused this row: {exc}")
        self.post_message(self.PreviewReady(source, index, renderable))

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        if message.source == self.source and message.index == self.pair_index:
            self.query_one("#pair-view", Static).update(message.renderable)

    # --- events and actions ---------------------------------------------------------------------
    @on(Input.Submitted, "#dataset-source")
    def _source_submitted(self, event: Input.Submitted) -> None:
        self.load(event.value)

    @on(OptionList.OptionSelected, "#dataset-samples")
    def _sample_selected(self, event: OptionList.OptionSelected) -> None:
        spec = event.option.id or "sample"
        self.query_one("#dataset-source", Input).value = "" if spec == "sample" else spec
        self.load(spec)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next":
            return True if self.report is not None and self.report.ok and not self.loading else None
        if action == "pair":
            tabs = self.query_one("#dataset-tabs", TabbedContent) if self.is_mounted else None
            return bool(tabs is not None and tabs.active == "pairs" and self.rows)
        return True

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()

    def action_tab(self, tab: str) -> None:
        self.query_one("#dataset-tabs", TabbedContent).active = tab
        if tab == "pairs":
            self.query_one("#pair-scroll").focus()
        elif self.focused is self.query_one("#pair-scroll"):
            # The pairs view is hidden now: Textual would move the focus on to the path box,
            # where the next letter key would be typed into the path.
            self.query_one("#dataset-samples").focus()

    def action_pair(self, delta: int) -> None:
        self.show_pair(self.pair_index + delta)

    def action_focus_source(self) -> None:
        self.query_one("#dataset-source", Input).focus()

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        if action != "next":
            return None
        if self.loading:
            return f"Still reading {self.source}: ctrl+n works once it is checked."
        if self.report is None:
            return f"{self.source} could not be read (see above): press o to type another path, or pick a sample."
        if not self.report.ok:
            errors = len(self.report.errors)
            return (f"{self.source} is not usable: {errors} error{'' if errors == 1 else 's'} on the Report tab (r). "
                    "Fix the file, or press o for another one.")
        return None

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next(self) -> None:
        from .experiment import ExperimentScreen

        why = self.why_not("next", ())
        if why:
            self.notify(why, title="Dataset", severity="warning", markup=False)
            return
        self.app.push_screen(ExperimentScreen())
