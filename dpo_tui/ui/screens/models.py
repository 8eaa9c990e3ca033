"""Model screen: the first setup step. Lists the models on this box, filters as you type, takes a
path or hub id, shows broken folders with their reason and the facts of the highlighted model.

The bundled tiny-chat row is added at once (one folder's headers); the hub cache and the settings'
model roots are scanned by a thread worker that posts :class:`ModelsFound`. ``core.models`` is
stdlib-only, so this screen costs no pydantic at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Input

from ...core.errors import UserError
from ..format import human_bytes, human_count
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.inputs import FieldInput
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen, RowTable

COLUMNS = (
    ("name", "model", 26),
    ("size", "size", 9),
    ("params", "params", 7),
    ("arch", "architecture", 20),
    ("context", "context", 7),
    ("chat", "chat", 4),
    ("where", "where", 40),
)


class ModelTable(RowTable):
    """The models list; enter chooses (shown in the footer, unlike DataTable's own enter)."""

    BINDINGS = [Binding("enter", "select_cursor", "Choose", id="models.choose", tooltip="Use the highlighted model")]


def model_spec(info: Any) -> str:
    """What goes into RunConfig.model for a listed model."""
    if getattr(info, "source", "") == "sample":
        return "sample"
    return getattr(info, "repo_id", None) or getattr(info, "path", None) or info.name


def where_text(info: Any) -> Text:
    if getattr(info, "error", None):
        return Text(f"✗ {info.error}", style="bold")
    source = getattr(info, "source", "") or ""
    if source == "sample":
        return Text("bundled sample")
    if getattr(info, "repo_id", None) and source in ("hf-cache", "cache", "hub"):
        return Text(f"hub cache · {info.repo_id}")
    return Text(str(getattr(info, "path", "") or source))


def row_cells(info: Any) -> list[Any]:
    broken = bool(getattr(info, "error", None))
    name = Text(info.name, style="dim" if broken else "")
    if getattr(info, "is_adapter", False):
        name.append(" (adapter)", style="dim")
    chat = "yes" if getattr(info, "has_chat_template", False) else "no"
    ctx = getattr(info, "context_length", None)
    return [
        name,
        human_bytes(getattr(info, "size_bytes", None)),
        human_count(getattr(info, "param_count", None)),
        getattr(info, "architecture", None) or "–",
        human_count(ctx) if ctx else "–",
        chat if not broken else "–",
        where_text(info),
    ]


def matches(info: Any, needle: str) -> bool:
    if not needle:
        return True
    hay = " ".join(str(getattr(info, k, "") or "") for k in ("name", "architecture", "model_type", "path", "repo_id")).lower()
    return all(part in hay for part in needle.lower().split())


def facts_text(info: Any) -> Text:
    if info is None:
        return Text("")
    text = Text()
    text.append(info.name, style="bold")
    if getattr(info, "error", None):
        text.append(f"  ✗ cannot be used: {info.error}", style="bold")
    lines = []
    arch = " · ".join(str(x) for x in (getattr(info, "architecture", None), getattr(info, "model_type", None)) if x)
    params = getattr(info, "param_count", None)
    bits = [arch] if arch else []
    if params:
        bits.append(f"{human_count(params)} parameters")
    if getattr(info, "dtype", None):
        bits.append(str(info.dtype))
    if getattr(info, "size_bytes", None):
        bits.append(f"{human_bytes(info.size_bytes)} on disk")
    if bits:
        lines.append(" · ".join(bits))
    shape = []
    for label, attr in (("layers", "num_layers"), ("hidden", "hidden_size"), ("heads", "num_heads"), ("kv heads", "num_kv_heads"), ("vocab", "vocab_size"), ("context", "context_length")):
        value = getattr(info, attr, None)
        if value:
            shape.append(f"{label} {value}")
    if shape:
        lines.append(" · ".join(shape))
    flags = [
        "chat template: " + ("yes" if getattr(info, "has_chat_template", False) else "no"),
        "tokenizer: " + ("yes" if getattr(info, "has_tokenizer", False) else "no"),
    ]
    if getattr(info, "quantization", None):
        flags.append(f"quantized ({info.quantization.get('quant_method', '?')})")
    if getattr(info, "adapters", None):
        flags.append(f"adapters here: {', '.join(info.adapters[:3])}")
    if getattr(info, "is_adapter", False):
        flags.append(f"adapter for {getattr(info, 'base_model', '?')}")
    lines.append(" · ".join(flags))
    where = getattr(info, "path", None) or getattr(info, "repo_id", None)
    if getattr(info, "source", "") == "sample" and not getattr(info, "error", None):
        where = "bundled with dpo-tui (sample_data/tiny-chat): trains in minutes on a CPU"
    if where:
        lines.append(str(where))
    for warning in (getattr(info, "warnings", None) or [])[:2]:
        lines.append(f"! {warning}")
    for line in lines:
        text.append("\n" + line)
    return text


class ModelScreen(ConsoleScreen):
    """Base screen of the ``setup`` mode."""

    MAIN_WIDGET = "#models-table"
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: dataset", id="models.next", priority=True, tooltip="Use the highlighted model and pick the data"),
        Binding("slash", "focus_filter", "Filter", id="models.filter", tooltip="Filter the list, or type a path or hub id"),
        Binding("b", "toggle_broken", "Broken", id="models.broken", tooltip="Show or hide folders that cannot be used"),
        Binding("ctrl+l", "rescan", "Rescan", id="models.rescan", show=False, tooltip="Scan the model folders again"),
        Binding("escape", "clear_filter", "Clear", id="models.clear", show=False, tooltip="Clear the filter"),
    ]

    class ModelsFound(Message):
        def __init__(self, models: list[Any], error: str | None = None) -> None:
            super().__init__()
            self.models, self.error = models, error

    class ModelInspected(Message):
        def __init__(self, spec: str, info: Any, error: str | None) -> None:
            super().__init__()
            self.spec, self.info, self.error = spec, info, error

    def __init__(self) -> None:
        super().__init__()
        self.models: list[Any] = []
        self.show_broken = True
        self.scanned = False
        self.typed: list[Any] = []
        """Models the operator typed (path or hub id): kept across rescans."""

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="setup-steps")
        yield FieldInput(placeholder="/ filter, or type a model folder or hub id (org/name) and press enter", id="model-filter", compact=True)
        table = ModelTable(id="models-table", cursor_type="row", zebra_stripes=True)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield TextPanel(id="model-facts")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        steps = Text("Setup  ")
        steps.append("1 model", style="bold reverse")
        steps.append("  →  2 dataset  →  3 experiment", style="dim")
        self.query_one("#setup-steps", TextPanel).show(steps)
        from ...core.models import sample_info

        self.models = [sample_info()]
        self._fill()
        self.query_one("#models-table").focus()
        self.call_after_refresh(self.console.first_screen_ready)
        # The hub cache scan waits for the first paint; settings may add model roots later.
        self.call_after_refresh(self.rescan)
        self.console.settings_signal.subscribe(self, self._settings_loaded)
        preselected = self.console.setup.model
        if preselected and preselected != "sample":
            self._inspect(preselected)

    # --- discovery ----------------------------------------------------------------------------
    def _settings_loaded(self, settings: Any) -> None:
        if settings is not None and hasattr(settings, "model_root_paths") and settings.model_root_paths():
            self.rescan()

    def rescan(self) -> None:
        settings = self.console.settings
        roots = []
        if settings is not None and hasattr(settings, "model_root_paths"):
            roots = list(settings.model_root_paths())
        self._discover(roots)

    @work(thread=True, exclusive=True, group="models-scan", exit_on_error=False, description="find models")
    def _discover(self, roots: list[Path]) -> None:
        try:
            found = self.services.discover_models(roots)
        except UserError as exc:
            self.post_message(self.ModelsFound([], exc.render()))
            return
        except OSError as exc:
            self.post_message(self.ModelsFound([], str(exc)))
            return
        self.post_message(self.ModelsFound(found))

    @on(ModelsFound)
    def _models_found(self, message: ModelsFound) -> None:
        self.scanned = True
        if message.error:
            self.notify(message.error, title="Models", severity="warning", markup=False)
            return
        listed = {model_spec(m) for m in message.models}
        self.models = list(message.models) + [m for m in self.typed if model_spec(m) not in listed]
        self._fill()

    @work(thread=True, exclusive=True, group="models-inspect", exit_on_error=False, description="inspect a model")
    def _inspect(self, spec: str) -> None:
        from ...core.models import inspect_model

        try:
            info = inspect_model(spec)
        except UserError as exc:
            self.post_message(self.ModelInspected(spec, None, exc.render()))
            return
        except OSError as exc:
            self.post_message(self.ModelInspected(spec, None, str(exc)))
            return
        self.post_message(self.ModelInspected(spec, info, None))

    @on(ModelInspected)
    def _model_inspected(self, message: ModelInspected) -> None:
        if message.error or message.info is None:
            self.notify(message.error or f"Nothing usable at {message.spec}", title="Model", severity="error", markup=False)
            return
        info = message.info
        key = model_spec(info)
        self.typed = [m for m in self.typed if model_spec(m) != key] + [info]
        self.models = [m for m in self.models if model_spec(m) != key] + [info]
        filt = self.query_one("#model-filter", Input)
        with filt.prevent(Input.Changed):
            filt.value = ""
        self._fill(highlight=len(self.models) - 1)
        self.query_one("#models-table").focus()

    # --- table ----------------------------------------------------------------------------------
    def visible_rows(self) -> list[int]:
        needle = self.query_one("#model-filter", Input).value.strip()
        looks_like_spec = "/" in needle or needle.startswith(("~", "."))
        return [
            i
            for i, m in enumerate(self.models)
            if (self.show_broken or not getattr(m, "error", None)) and (looks_like_spec or matches(m, needle))
        ]

    def _fill(self, highlight: int | None = None) -> None:
        table = self.query_one("#models-table", DataTable)
        current = self.highlighted_index if highlight is None else highlight
        table.clear()
        rows = self.visible_rows()
        for i in rows:
            table.add_row(*row_cells(self.models[i]), key=f"m{i}")
        if current in rows:
            table.move_cursor(row=rows.index(current), animate=False)
        broken = sum(1 for m in self.models if getattr(m, "error", None))
        self.query_one("#model-facts", TextPanel).show(facts_text(self.highlighted))
        if broken and not self.show_broken:
            self.notify(f"{broken} broken folder(s) hidden; press b to show them", timeout=3)
        self.refresh_bindings()

    @property
    def highlighted_index(self) -> int | None:
        table = self.query_one("#models-table", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - empty table during a refill
            return None
        return int(str(key)[1:]) if key else None

    @property
    def highlighted(self) -> Any:
        index = self.highlighted_index
        return self.models[index] if index is not None and index < len(self.models) else None

    @on(DataTable.RowHighlighted, "#models-table")
    def _row_highlighted(self) -> None:
        self.query_one("#model-facts", TextPanel).show(facts_text(self.highlighted))
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#models-table")
    def _row_selected(self) -> None:
        self.action_next()

    @on(Input.Changed, "#model-filter")
    def _filter_changed(self) -> None:
        self._fill()

    @on(Input.Submitted, "#model-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        rows = self.visible_rows()
        if text and ("/" in text or text.startswith(("~", ".")) or Path(text).expanduser().exists()):
            self._inspect(text)
            return
        if len(rows) >= 1:
            self.query_one("#models-table").focus()
            if len(rows) == 1:
                self.action_next()

    # --- actions ----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next":
            info = self.highlighted
            return True if info is not None and not getattr(info, "error", None) else None
        return True

    def why_not(self, action: str, parameters: tuple[object, ...]) -> str | None:
        info = self.highlighted
        if action == "next" and info is not None and getattr(info, "error", None):
            return f"{info.name} cannot be used: {info.error}"
        if action == "next" and info is None:
            return "No model listed: type a model folder or hub id after / and press enter."
        return None

    def action_focus_filter(self) -> None:
        self.query_one("#model-filter", Input).focus()

    def action_clear_filter(self) -> None:
        filt = self.query_one("#model-filter", Input)
        filt.value = ""
        self.query_one("#models-table").focus()

    def action_toggle_broken(self) -> None:
        if not any(getattr(m, "error", None) for m in self.models):
            self.notify("No broken folders: every model found can be used.", title="Models", timeout=3)
            return
        self.show_broken = not self.show_broken
        self._fill()

    def action_rescan(self) -> None:
        self.rescan()

    def action_next(self) -> None:
        from .dataset import DatasetScreen

        info = self.highlighted
        if info is None or getattr(info, "error", None):
            why = self.why_not("next", ())
            if why:
                self.notify(why, title="Model", severity="error", markup=False)
            return
        if getattr(info, "is_adapter", False):
            self.notify(
                f"{info.name} is a LoRA adapter for {getattr(info, 'base_model', '?')}: choose its base model to train",
                title="Model",
                severity="warning",
                markup=False,
            )
            return
        setup = self.console.setup
        spec = model_spec(info)
        if setup.model != spec:
            setup.values.pop("model", None)
        setup.model = spec
        setup.model_info = info
        self.app.push_screen(DatasetScreen())
