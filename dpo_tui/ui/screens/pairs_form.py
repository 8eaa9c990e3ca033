"""The Pairs screen's dialogs: the generate form (``n``) and the label-by-rule question (``b``).

The generate form plans and starts a detached job in a thread worker (``core.pairs.plan``:
``plan_pairs`` then ``start_pairs``); a refusal (a bad prompts file with its line numbers, an output
folder holding another plan, n out of range) is shown in the form, never as a traceback. Enter in any
field or ``ctrl+s`` starts; the dialog dismisses with the job folder.

Defaults for the bundled sample model: its held-out prompts and two contrasting instructions, so the
operator can make steered pairs (concise vs long) in one key.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ...core.errors import UserError
from ..widgets.inputs import FieldInput

SAMPLE_INSTRUCTIONS = ("Answer in one short sentence.", "Answer in detail, with an introduction and a summary.")
GENERATE_HINT = "enter or ctrl+s starts (in the background) · esc cancels"


def pairs_root() -> Path:
    """Where the console puts new pair folders (``$DPO_TUI_HOME/pairs``)."""
    from ...core import paths

    return paths.pairs_root()


@dataclass
class GenerateRequest:
    """The form's fields as typed."""

    model: str
    adapter: str
    prompts: str
    n: str
    temperature: str
    instruction_a: str
    instruction_b: str
    out: str

    def arguments(self, runs_root: Path) -> dict[str, Any]:
        """``plan_pairs`` keyword arguments; UserError for a field that is not a number."""
        try:
            n = int(self.n)
        except ValueError:
            raise UserError(f"n must be a whole number from 2 to 8, not {self.n!r}", hint="candidates per prompt: 2 to 8") from None
        try:
            temperature = float(self.temperature)
        except ValueError:
            raise UserError(f"temperature must be a number, not {self.temperature!r}", hint="for example 0.8") from None
        if not self.prompts:
            raise UserError("Give a prompts file (one prompt a line, or JSONL)")
        if not self.out:
            raise UserError("Give an output folder")
        return {
            "model": self.model or None, "adapter": self.adapter or None, "prompts": Path(self.prompts).expanduser(),
            "n": n, "temperature": temperature, "instruction_a": self.instruction_a or None,
            "instruction_b": self.instruction_b or None, "out": Path(self.out).expanduser(), "runs_root": runs_root,
        }


def default_request(setup_model: str | None, adapter: str | None, now: float, root: Path | None = None) -> GenerateRequest:
    """The form's starting values: the setup's model (else the sample), the sample's prompts and steers."""
    from ...core import paths

    model = setup_model or "sample"
    sample = model == "sample"
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.rstrip("/").rsplit("/", 1)[-1]).strip("-") or "model"
    name = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{'tiny-chat' if sample else label}"
    if adapter:
        name += "-round2"
    return GenerateRequest(
        model=model, adapter=adapter or "",
        prompts=str(paths.sample_heldout_prompts_path()) if sample else "",
        n="2", temperature="0.8",
        instruction_a=SAMPLE_INSTRUCTIONS[0] if sample else "", instruction_b=SAMPLE_INSTRUCTIONS[1] if sample else "",
        out=str((root if root is not None else pairs_root()) / name),
    )


FIELDS = (
    ("model", "model: a folder, a hub id, or sample (empty with an adapter: the run's base)"),
    ("adapter", "adapter: empty, or a run id (sample from the tuned model: round two)"),
    ("prompts", "prompts file: one prompt a line, or JSONL"),
    ("n", "candidates per prompt (2–8)"),
    ("temperature", "temperature"),
    ("instruction_a", "instruction A (optional: steers candidates c0, c2, …)"),
    ("instruction_b", "instruction B (optional: steers candidates c1, c3, …)"),
    ("out", "output folder"),
)


class GenerateDialog(ModalScreen[Path | None]):
    """Plan and start a pairs generate job."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Generate", id="pairs-form.start", priority=True, tooltip="Start generating (detached)"),
        Binding("escape", "cancel", "Cancel", id="pairs-form.cancel", tooltip="Close without starting"),
    ]

    @dataclass
    class Started(Message):
        """The job folder, or the refusal to show. Posted once by the ``pairs-start`` worker."""

        job_dir: Path | None
        error: str = ""

    def __init__(self, request: GenerateRequest, runs_root: Path) -> None:
        super().__init__()
        self.initial = request
        self.runs_root = runs_root
        self.starting = False

    def compose(self) -> ComposeResult:
        with Vertical(id="pairs-form", classes="dialog-box"):
            yield Label("Generate candidate pairs", id="pairs-form-title")
            for name, placeholder in FIELDS:
                yield Label(placeholder.split(":")[0].split(" (")[0], classes="pairs-form-label")
                yield FieldInput(str(getattr(self.initial, name)), id=f"pairs-{name.replace('_', '-')}",
                                 placeholder=placeholder, compact=True)
            yield Static("", id="pairs-form-error")
            yield Label(GENERATE_HINT, id="pairs-form-hint")

    def on_mount(self) -> None:
        self.query_one("#pairs-form-error", Static).display = False
        self.query_one("#pairs-prompts", Input).focus()

    def request(self) -> GenerateRequest:
        values = {name: self.query_one(f"#pairs-{name.replace('_', '-')}", Input).value.strip() for name, _ in FIELDS}
        return GenerateRequest(**values)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    def show_error(self, text: str) -> None:
        error = self.query_one("#pairs-form-error", Static)
        error.update(Text(f"✗ {text}"))
        error.display = bool(text)

    def action_start(self) -> None:
        if self.starting:
            return
        self.starting = True
        self.query_one("#pairs-form-hint", Label).update("checking and starting…")
        self._start(self.request())

    @work(thread=True, exclusive=True, group="pairs-start", exit_on_error=False, description="start the pair generation")
    def _start(self, request: GenerateRequest) -> None:
        try:
            from ...core.pairs.plan import plan_pairs, start_pairs

            plan = plan_pairs(**request.arguments(self.runs_root))
            self.post_message(self.Started(start_pairs(plan)))
        except UserError as exc:
            self.post_message(self.Started(None, exc.render()))
        except OSError as exc:
            self.post_message(self.Started(None, f"Cannot start: {exc.strerror or exc}"))

    def on_generate_dialog_started(self, message: Started) -> None:
        if message.job_dir is not None:
            self.dismiss(message.job_dir)
            return
        self.starting = False
        self.query_one("#pairs-form-hint", Label).update(GENERATE_HINT)
        self.show_error(message.error)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RuleDialog(ModalScreen[str | None]):
    """Ask how to label a folder: a rule spec (``shorter``, ``must-not:REGEX+shorter``, …) or ``hand``."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="pairs-rule.cancel", tooltip="Close without labelling"),
    ]

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(id="pairs-rule", classes="dialog-box"):
            yield Label(Text(f"Label {self.folder}", no_wrap=True, overflow="ellipsis"), id="pairs-rule-title")
            yield Label("rule: shorter, longer, must:REGEX, must-not:REGEX, words:MIN-MAX (join with +), or hand")
            yield FieldInput("shorter", id="pairs-rule-spec", compact=True)
            yield Label("enter labels and writes pairs.jsonl · esc cancels", id="pairs-rule-hint")

    def on_mount(self) -> None:
        self.query_one("#pairs-rule-spec", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        spec = event.value.strip()
        self.dismiss(spec or "shorter")

    def action_cancel(self) -> None:
        self.dismiss(None)


def label_command(folder: Path, spec: str) -> list[str]:
    """The ``dpo-tui pairs label`` command line for a spec (``hand``: the A/B queue's decisions)."""
    import sys

    by = ["--by", "hand"] if spec == "hand" else ["--rule", spec]
    return [sys.executable, "-m", "dpo_tui", "pairs", "label", str(folder), *by, "--json"]


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The label summary as the CLI prints it (one renderer for both), without the output path the list shows."""
    from ...core.pairs.labelling import render_summary

    try:
        lines = render_summary(summary).splitlines()
    except (KeyError, TypeError, AttributeError):
        return [f"pairs {summary.get('pairs', '?')} written"]
    return [line for line in lines if not line.startswith("wrote ")]
