"""Experiment screen: every RunConfig field, validated as you type, a live VRAM bar, the equivalent
command line, "save as TOML", and launch.

State: ``self.values`` (field → raw value) is the one source of truth; widgets post changes, the
handler updates it, validates it into a RunConfig (``core.config.build_config``), and redraws the
errors, the VRAM estimate (``core.vram.estimate``, pure arithmetic, so it runs synchronously on
every change: well inside 100 ms) and the command line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from ...core.config import BETA_PRESETS, RunConfig
from ...core.errors import UserError
from ...core.preflight import rank_note
from .. import form
from ..gpu_choice import chosen_gpus, device_note, usable_gpus
from ..messages import Notice, RunLaunched
from ..widgets.checkbox import FieldCheckbox as Checkbox
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.inputs import FieldInput
from ..widgets.resident_banner import ResidentBanner, release_resident_chat
from ..widgets.run_panels import TextPanel
from ..widgets.vram_bar import SUGGESTION_KEYS, VramBar
from .base import ConsoleScreen
from .ladder_dialog import LadderDialog, ladder_detail, ladder_group, queue_ladder, queued_text


class ExperimentScreen(ConsoleScreen):
    """Third setup step. ``ctrl+r`` launches; ``ctrl+s`` saves the config as TOML."""

    BINDINGS = [
        Binding("ctrl+r", "launch", "Launch", id="experiment.launch", priority=True, tooltip="Create the run and start it detached"),
        Binding("ctrl+s", "save_toml", "Save TOML", id="experiment.save", priority=True, tooltip="Save these settings as a TOML config"),
        Binding("ctrl+b", "next_beta", "β preset", id="experiment.beta", priority=True, tooltip="Cycle β through the presets"),
        Binding("ctrl+g", "ladder", "β ladder", id="experiment.ladder", priority=True,
                tooltip="Queue one run per β, everything else equal"),
        Binding("ctrl+o", "pick_gpus", "GPUs", id="experiment.gpus", priority=True,
                tooltip="Pick the GPUs: free memory and other users' processes on each"),
        Binding("escape", "back", "Back", id="experiment.back", show=False, tooltip="Back to the dataset"),
        Binding("f10", "release_chat", "Release chat", id="experiment.release_chat", show=False,
                tooltip="Stop the chat worker Chat keeps loaded and free its memory for the run"),
        *[
            Binding(key, f"apply_suggestion({i})", f"Suggestion {i + 1}", id=f"experiment.suggest{i + 1}", show=False, priority=True,
                    tooltip="Apply this VRAM suggestion")
            for i, key in enumerate(SUGGESTION_KEYS)
        ],
    ]

    class ModelInspected(Message):
        def __init__(self, model: str, info: Any, error: str | None) -> None:
            super().__init__()
            self.model, self.info, self.error = model, info, error

    class LadderLaunched(Message):
        """A β ladder was created and queued (``run_ids`` empty when it failed)."""

        def __init__(self, group: str, run_ids: list[str], betas: list[float]) -> None:
            super().__init__()
            self.group, self.run_ids, self.betas = group, run_ids, betas

    def __init__(self) -> None:
        super().__init__()
        self.specs = {spec.name: spec for _, specs in form.all_specs() for spec in specs}
        self.values: dict[str, Any] = {}
        self.config: RunConfig | None = None
        self.problems: dict[str, str] = {}
        self.estimate: Any = None
        self.vram_error: str | None = None
        self.last_vram_update: float | None = None
        """perf_counter() when the VRAM bar was last recomputed (the 100 ms budget is checked against it)."""
        self.launching = False
        self._last_rank: int | None = None

    # --- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="setup-steps")
        yield ResidentBanner(id="experiment-resident")
        yield VramBar(id="vram")
        with VerticalScroll(id="experiment-form"):
            for title, specs in form.all_specs():
                yield Label(title, classes="form-section")
                for spec in specs:
                    with Horizontal(classes="form-row", id=f"row-{spec.name}"):
                        yield Label(spec.label, classes="field-label")
                        yield self._widget_for(spec)
                        if spec.name == "beta":
                            for preset in BETA_PRESETS:
                                yield Button(f"{preset:g}", id=f"beta-{str(preset).replace('.', '_')}", classes="beta-preset", compact=True)
                        yield Label("", classes="field-error", id=f"e-{spec.name}")
        yield Static("", id="field-help")
        yield TextPanel(id="form-problems")
        yield Static("", id="command-line")
        yield ConsoleFooter()

    def _widget_for(self, spec: form.FieldSpec) -> Widget:
        wid = f"f-{spec.name}"
        if spec.kind == "bool":
            return Checkbox("", id=wid, compact=True, classes="field-input")
        if spec.kind == "choice":
            return Select([(c, c) for c in spec.choices], id=wid, compact=True, allow_blank=False, classes="field-input")
        return FieldInput(id=wid, compact=True, classes="field-input")

    def on_mount(self) -> None:
        setup = self.console.setup
        defaults = RunConfig.model_construct().model_dump()
        self.values = {**defaults, **setup.config_values()}
        self._last_rank = _positive_int(self.values.get("lora_rank"))
        self.query_one("#setup-steps", TextPanel).show(self._steps())
        self._fill_widgets(self.values)
        for label in self.query(".field-error"):
            label.display = False
        self._validate()
        if setup.model_info is None:
            self._inspect_model(self.values.get("model") or "sample")
        else:
            self._update_vram()
        self.query_one("#f-beta").focus()
        self.console.inventory_signal.subscribe(self, lambda _inv: self._update_vram())

    def _steps(self) -> Text:
        """The breadcrumb; at 80 columns the words "Setup", "model:" and "dataset:" go so that the
        current step, "3 experiment", always shows."""
        setup = self.console.setup
        model, dataset = setup.model_label(), setup.dataset_label()
        full = f"Setup  1 model: {model} ✓  →  2 dataset: {dataset} ✓  →  3 experiment"
        short = len(full) > self.app.size.width - 2
        text = Text("" if short else "Setup  ")
        text.append(f"1 {model} ✓" if short else f"1 model: {model} ✓", style="dim")
        text.append(" → " if short else "  →  ")
        text.append(f"2 {dataset} ✓" if short else f"2 dataset: {dataset} ✓", style="dim")
        text.append(" → " if short else "  →  ")
        text.append("3 experiment", style="bold reverse")
        return text

    def _fill_widgets(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            spec = self.specs.get(name)
            if spec is None:
                continue
            widget = self.query_one(f"#f-{name}")
            if isinstance(widget, Checkbox):
                with widget.prevent(Checkbox.Changed):
                    widget.value = bool(value)
            elif isinstance(widget, Select):
                with widget.prevent(Select.Changed):
                    widget.value = str(value)
            elif isinstance(widget, Input):
                with widget.prevent(Input.Changed):
                    widget.value = form.to_text(spec, value)

    # --- changes ---------------------------------------------------------------------------------
    def _field_of(self, widget: Widget) -> str | None:
        wid = widget.id or ""
        return wid[2:] if wid.startswith("f-") else None

    @on(Input.Changed, ".field-input")
    def _input_changed(self, event: Input.Changed) -> None:
        name = self._field_of(event.input)
        if name:
            self.set_value(name, form.from_text(self.specs[name], event.value))

    @on(Select.Changed, ".field-input")
    def _select_changed(self, event: Select.Changed) -> None:
        name = self._field_of(event.select)
        if name and event.value is not Select.NULL:
            self.set_value(name, event.value)

    @on(Checkbox.Changed, ".field-input")
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        name = self._field_of(event.checkbox)
        if name:
            self.set_value(name, event.value)

    @on(Button.Pressed, ".beta-preset")
    def _beta_preset(self, event: Button.Pressed) -> None:
        self.apply_changes({"beta": float(str(event.button.label))})

    def set_value(self, name: str, value: Any) -> None:
        if name == "lora_rank":
            self._alpha_follows_rank(value)
        self.values[name] = value
        setup = self.console.setup
        setup.values[name] = value
        if name == "model":
            setup.model = str(value)
            setup.model_info = None
            self._inspect_model(str(value))
        elif name == "dataset":
            setup.dataset = str(value)
        self._validate()

    def _alpha_follows_rank(self, rank: Any) -> None:
        """Keep lora alpha = 2 × rank (the usual scaling) while alpha still has that relation to the last
        valid rank; once the operator sets another alpha, it is theirs and stays."""
        new = _positive_int(rank)
        if new is None:
            return  # half-typed or invalid: keep the last good rank, decide on the next one
        last = self._last_rank if self._last_rank is not None else _positive_int(self.values.get("lora_rank"))
        self._last_rank = new
        if last is not None and _positive_int(self.values.get("lora_alpha")) == 2 * last and new != last:
            self.apply_changes({"lora_alpha": 2 * new})

    def apply_changes(self, changes: dict[str, Any]) -> None:
        """Set several fields at once (a suggestion, a preset) and update their widgets."""
        self.values.update(changes)
        self.console.setup.values.update(changes)
        self._fill_widgets(changes)
        self._validate()

    def _validate(self) -> None:
        previous = self.problems
        self.config, self.problems = form.problems_by_field(self.values)
        # The VRAM bar first: its budget is 100 ms from a keystroke.
        self._update_vram()
        self.query_one("#command-line", Static).update(
            Text("$ " + form.command_line(self.config), style="bold") if self.config else Text("$ dpo-tui train … (fix the problems above)", style="dim")
        )
        # Only rows whose problem changed are touched (each touch costs a relayout).
        for name in set(previous) | set(self.problems):
            if name == "" or previous.get(name) == self.problems.get(name):
                continue
            problem = self.problems.get(name, "")
            label = self.query_one(f"#e-{name}", Label)
            label.update(problem)
            label.display = bool(problem)
            self.query_one(f"#row-{name}").set_class(bool(problem), "-invalid")
        general = self.problems.get("", "")
        count = len(self.problems)
        panel = self.query_one("#form-problems", TextPanel)
        if count:
            first = general or next(f"{k.replace('_', ' ')}: {v}" for k, v in self.problems.items())
            panel.show(Text(f"✗ {count} problem{'s' if count > 1 else ''}: {first}", style="bold"))
        else:
            panel.show(Text("✓ ready to launch (ctrl+r)", style="bold"))
        panel.set_class(bool(count), "-invalid")
        self.refresh_bindings()

    # --- VRAM ------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="experiment-inspect", exit_on_error=False, description="inspect the model")
    def _inspect_model(self, model: str) -> None:
        try:
            from ...core.models import inspect_model
        except ImportError:
            self.post_message(self.ModelInspected(model, None, "model inspection is not available yet"))
            return
        try:
            info = inspect_model(model)
        except UserError as exc:
            self.post_message(self.ModelInspected(model, None, exc.summary))
            return
        except OSError as exc:
            self.post_message(self.ModelInspected(model, None, str(exc)))
            return
        self.post_message(self.ModelInspected(model, info, None))

    @on(ModelInspected)
    def _model_inspected(self, message: ModelInspected) -> None:
        if message.model != self.values.get("model"):
            return
        self.console.setup.model_info = message.info
        self.vram_error = message.error
        self._update_vram()

    def chosen_memory(self, config: RunConfig | None) -> tuple[int | None, str]:
        """Free bytes of the chosen GPU(s) (the smallest, since every process needs it) and a label."""
        inventory = self.console.gpu_inventory
        chosen = chosen_gpus(inventory, config)
        if not chosen:
            if usable_gpus(inventory):
                return None, "no such GPU"
            ram = inventory.ram_available if inventory is not None else None
            return (int(ram) if ram else None), "CPU RAM"
        label = ",".join(f"GPU{g.index}" for g in chosen)
        return int(min(g.memory_free for g in chosen)), label

    def _update_vram(self) -> None:
        bar = self.query_one(VramBar)
        setup = self.console.setup
        config = self.config
        free, label = self.chosen_memory(config)
        bar.free_bytes, bar.device_label = free, label
        hidden = getattr(setup.model_info, "hidden_size", None)
        bar.note = "; ".join(filter(None, [device_note(self.console.gpu_inventory, config), rank_note(config, hidden)]))
        if self.vram_error:
            bar.error = self.vram_error
        elif config is None:
            # An invalid field: the old figure would describe settings that no longer exist.
            name, problem = next(iter(self.problems.items()), ("", "invalid settings"))
            self.estimate = None
            bar.estimate = None
            bar.error = f"— (fix {name.replace('_', ' ')} first)" if name else f"— ({problem})"
        elif setup.model_info is None:
            bar.error = None
            bar.estimate = None
        else:
            try:
                from ...core.vram import estimate
            except ImportError:
                bar.error = "the VRAM model is not available yet"
                return
            padded = None
            report = setup.data_report
            tokens = (getattr(report, "stats", None) or {}).get("tokens") if report is not None else None
            if tokens and (tokens.get("padded") or {}).get("max"):
                padded = min(int(tokens["padded"]["max"]), config.max_length)
            try:
                device = "cpu" if label == "CPU RAM" else "cuda"
                self.estimate = estimate(setup.model_info, config, padded_length=padded, free_bytes=free, device=device)
            except (UserError, ValueError, TypeError) as exc:
                bar.error = f"cannot estimate: {exc}"
                return
            bar.error = None
            bar.estimate = self.estimate
        self.last_vram_update = time.perf_counter()

    def action_apply_suggestion(self, index: int) -> None:
        suggestions = list(getattr(self.estimate, "suggestions", None) or [])
        if index >= len(suggestions):
            return
        changes = dict(getattr(suggestions[index], "changes", {}) or {})
        self.apply_changes(changes)
        self.notify(f"Applied: {getattr(suggestions[index], 'label', changes)}", timeout=3, markup=False)

    # --- focus help --------------------------------------------------------------------------------
    def on_descendant_focus(self, event: Any) -> None:
        widget = event.widget if hasattr(event, "widget") else None
        name = self._field_of(widget) if widget is not None else None
        if name is None and widget is not None and (widget.id or "").startswith("beta-"):
            name = "beta"
        if name:
            help_text = Text(f"{name}: ", style="bold")
            help_text.append(form.field_help(name))
            self.query_one("#field-help", Static).update(help_text)

    # --- actions -------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("launch", "ladder"):
            return True if self.config is not None and not self.launching else None
        if action == "save_toml":
            return True if self.config is not None else None
        if action == "apply_suggestion":
            suggestions = list(getattr(self.estimate, "suggestions", None) or [])
            return bool(parameters) and isinstance(parameters[0], int) and parameters[0] < len(suggestions)
        return True

    def action_pick_gpus(self) -> None:
        from .gpu_picker import GpuPickerDialog

        values = self.values
        picked = [int(i) for i in values.get("gpus") or [] if str(i).strip().isdigit()]
        try:
            nproc = self.config.nproc if self.config else max(1, int(values.get("nproc") or 1))
        except (TypeError, ValueError):
            nproc = 1  # the field holds a typo; the picker still opens
        inventory = self.console.gpu_inventory

        def chosen(indices: list[int] | None) -> None:
            if indices is None:
                return
            changes: dict[str, Any] = {"gpus": indices}
            if indices:
                changes["nproc"] = len(indices)  # one process per GPU
            self.apply_changes(changes)
            where = f"GPU {','.join(map(str, indices))}" if indices else f"the first {nproc} GPU(s)"
            self.notify(f"The run will use {where}.", title="GPUs", timeout=3, markup=False)

        self.app.push_screen(GpuPickerDialog(inventory, picked, nproc, str(values.get("strategy") or "ddp")), chosen)

    def action_next_beta(self) -> None:
        try:
            current = float(self.values.get("beta", BETA_PRESETS[0]))
        except (TypeError, ValueError):
            current = BETA_PRESETS[0]
        later = [b for b in BETA_PRESETS if b > current + 1e-12]
        self.apply_changes({"beta": later[0] if later else BETA_PRESETS[0]})

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_release_chat(self) -> None:
        release_resident_chat(self)

    def action_save_toml(self) -> None:
        from .save_dialog import SavePathDialog

        config = self.config
        if config is None:
            return
        model = "tiny-chat" if config.model == "sample" else Path(config.model).name or "model"
        default = str(Path.cwd() / f"dpo-{model}-b{config.beta:g}.toml")

        def save(path: str | None) -> None:
            if path:
                self._save(config, Path(path).expanduser())

        self.app.push_screen(SavePathDialog("Save the experiment as TOML", default), save)

    def _save(self, config: RunConfig, path: Path) -> None:
        from ...core.fsutil import atomic_write_text

        try:
            atomic_write_text(path, config.to_toml())
        except OSError as exc:
            self.notify(f"Cannot write {path}: {exc.strerror or exc}", title="Save", severity="error", markup=False)
            return
        self.notify(f"Saved {path}\nRun it with: dpo-tui train --config {path}", title="Save", markup=False)

    def action_launch(self) -> None:
        if self.config is None or self.launching:
            return
        self.launching = True
        self.refresh_bindings()
        self.query_one("#form-problems", TextPanel).show(Text("launching…", style="bold"))
        self._launch(self.config)

    @work(thread=True, exclusive=True, group="experiment-launch", exit_on_error=False, description="launch the run")
    def _launch(self, config: RunConfig) -> None:
        from ...core import runs
        from ...core.init_adapter import resolve_init_adapter

        services = self.services
        try:
            config, adapter_notes = resolve_init_adapter(config, services.runs_root)  # a run id → its adapter folder
            services.preflight(config)  # the same checks as `dpo-tui train`: nothing is created on bad input
            run = runs.create_run(services.runs_root, config)
        except UserError as exc:
            self.post_message(Notice("Launch", exc.render(), "error"))
            self.post_message(RunLaunched(""))
            return
        try:
            services.launcher(run)
        except (OSError, UserError) as exc:
            text = exc.render() if isinstance(exc, UserError) else str(exc)
            run.update_status(state="failed", kind="crash", message=f"could not start the supervisor: {text}")
            self.post_message(Notice("Launch", f"Could not start {run.id}: {text}", "error"))
            self.post_message(RunLaunched(""))
            return
        if adapter_notes:
            self.post_message(Notice("Launch", "\n".join(adapter_notes), "warning"))
        self.post_message(RunLaunched(run.id))

    @on(RunLaunched)
    def _launched(self, message: RunLaunched) -> None:
        self.launching = False
        self.refresh_bindings()
        self._validate()
        if message.run_id:
            self.notify(f"Started {message.run_id}. It keeps running if you quit.", title="Launch", markup=False)
            self.console.open_monitor(message.run_id)

    # --- β ladder ------------------------------------------------------------------------------------
    def action_ladder(self) -> None:
        config = self.config
        if config is None or self.launching:
            return
        group = ladder_group(config, self.services.clock())

        def answer(betas: list[float] | None) -> None:
            if betas:
                self.launching = True
                self.refresh_bindings()
                self.query_one("#form-problems", TextPanel).show(Text(f"queueing {len(betas)} runs…", style="bold"))
                self._ladder(config, betas, group)

        self.app.push_screen(LadderDialog(group, ladder_detail(config)), answer)

    @work(thread=True, exclusive=True, group="experiment-launch", exit_on_error=False, description="queue a β ladder")
    def _ladder(self, config: RunConfig, betas: list[float], group: str) -> None:
        run_ids, problem, notes = queue_ladder(self.services, config, betas, group)
        if problem:
            self.post_message(Notice("β ladder", problem, "error"))
        if notes:
            self.post_message(Notice("β ladder", "\n".join(notes), "warning"))
        self.post_message(self.LadderLaunched(group, run_ids, betas))

    @on(LadderLaunched)
    def _ladder_launched(self, message: LadderLaunched) -> None:
        self.launching = False
        self.refresh_bindings()
        self._validate()
        if message.run_ids:
            self.notify(queued_text(message.group, message.run_ids, message.betas), title="β ladder", markup=False)
            self.console.open_runs(message.group)


def _positive_int(value: Any) -> int | None:
    """A form value (typed text or a number) as a positive int, else None."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None
