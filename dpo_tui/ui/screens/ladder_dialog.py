"""Ask for a β ladder's values (modal), and queue the ladder the experiment screen asked for.

:class:`LadderDialog` dismisses with the β list, or None when cancelled; :func:`queue_ladder` creates
and queues the runs (off the UI thread) and :func:`ladder_group` / :func:`ladder_detail` /
:func:`queued_text` are the words the experiment screen shows around it.

The text is checked as you type with the parser ``dpo-tui ladder --betas`` uses (``core.ladder.parse_betas``:
at least two distinct values, each > 0), so the dialog and the CLI accept exactly the same input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ...core.errors import UserError, first_line
from ..widgets.inputs import FieldInput

DEFAULT_BETAS = "0.05,0.1,0.5"


def check_betas(text: str) -> tuple[list[float] | None, str]:
    """(the β values, "") or (None, what is wrong)."""
    from ...core.ladder import parse_betas

    try:
        return parse_betas(text, source="β list"), ""
    except UserError as exc:
        return None, exc.summary


def ladder_group(config: Any, now: float) -> str:
    """The ladder's group: the experiment's own group, else ``ladder-YYYYmmdd-HHMMSS`` (the CLI's name)."""
    return config.group or time.strftime("ladder-%Y%m%d-%H%M%S", time.localtime(now))


def ladder_detail(config: Any) -> str:
    """What stays equal across the ladder's runs, and how they run."""
    model = "tiny-chat" if config.model == "sample" else Path(config.model).name or config.model
    rank = "full" if config.method == "full" else f"r={config.lora_rank}"
    return (f"Same model, data, seed and data order as this experiment ({model} · {config.loss_type} · {rank}). "
            "The runs wait in the queue and train one after another on the same device.")


def queue_ladder(services: Any, config: Any, betas: list[float], group: str) -> tuple[list[str], str, list[str]]:
    """Create and queue one run per β with the same checks as ``dpo-tui ladder``: (run ids, "", warnings)
    or ([], why not, []). ``init_adapter`` is resolved once, so every rung starts from the same adapter;
    the warnings are the LoRA settings the adapter overrides. Blocks: call it from a thread worker."""
    from ...core.init_adapter import resolve_init_adapter

    try:
        config, notes = resolve_init_adapter(config, services.runs_root)
        services.preflight(config)
        runs = services.ladder(services.runs_root, config, betas, group)
    except (UserError, OSError, ValueError) as exc:
        text = exc.render() if isinstance(exc, UserError) else first_line(exc)
        return [], f"Could not queue the ladder: {text}", []
    return [run.id for run in runs], "", notes


def queued_text(group: str, run_ids: list[str], betas: list[float]) -> str:
    shown = ", ".join(f"{b:g}" for b in betas)
    return (f"Ladder '{group}': {len(run_ids)} runs queued (β = {shown}). "
            "They keep running if you quit; x on the runs screen cancels the ladder.")


class LadderDialog(ModalScreen[list[float] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ladder.cancel")]

    def __init__(self, group: str, detail: str, default: str = DEFAULT_BETAS) -> None:
        super().__init__()
        self.group = group
        self.detail = detail
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="ladder-box"):
            yield Label("β ladder: one run per β, everything else equal", id="ladder-title")
            # Static, not Label: the box's width wraps them, so nothing is cut at 80 columns.
            yield Static(self.detail, id="ladder-detail", markup=False)
            yield FieldInput(self.default, id="ladder-betas", placeholder="comma-separated β values, e.g. 0.05,0.1,0.5")
            yield Static("", id="ladder-error", markup=False)
            yield Static(f"group {self.group} · enter queues the runs · esc cancels", id="ladder-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#ladder-error", Static).display = False
        self.query_one("#ladder-betas", Input).focus()

    def _show_error(self, problem: str) -> None:
        label = self.query_one("#ladder-error", Static)
        label.update(problem)
        label.display = bool(problem)

    @on(Input.Changed, "#ladder-betas")
    def _changed(self, event: Input.Changed) -> None:
        _, problem = check_betas(event.value)
        self._show_error(problem)

    @on(Input.Submitted, "#ladder-betas")
    def _submitted(self, event: Input.Submitted) -> None:
        betas, problem = check_betas(event.value)
        if betas is None:
            self._show_error(problem)
            return
        self.dismiss(betas)

    def action_cancel(self) -> None:
        self.dismiss(None)
