"""Start an evaluation from the console (modal): held-out files, judge, samples, checkpoint; then launch.

The same checks and the same job as ``dpo-tui eval``: ``core.eval.jobs.plan_eval`` (a ``UserError``
names what is wrong: a missing file, an unknown run) and ``start_eval`` (the job folder
``RUNS_ROOT/.eval/ID/``, worker detached: it survives the console). The judge spec is checked as
it is typed (``core.judge.parse_judge_spec``) and its error shows under the field. The dialog
dismisses with the job folder, or None when cancelled; :func:`open_eval` then follows the job on
the runs screen (``ui/eval_watch.py``).

For runs trained on the bundled sample, the held-out files of the sample are filled in; for other
runs the files are empty (the job then uses the run's eval split when it has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from ...core.errors import UserError, first_line
from ..widgets.inputs import FieldInput

HINT = "enter starts the evaluation (in the background) · esc cancels"
FIELDS = (  # (id, label, placeholder)
    ("prompts", "prompts", "held-out prompts file (empty: the run's eval split)"),
    ("facts", "facts", "facts file, JSONL {prompt, expected} (optional)"),
    ("pairs", "pairs", "held-out pairs file (optional; default: the eval split)"),
    ("judge", "judge", "none, shorter, regex:…, rm=FOLDER, url=…,model=…"),
    ("samples", "samples", "sampled answers per prompt"),
    ("tokens", "max tokens", "max new tokens per answer"),
)


def sample_files() -> dict[str, str]:
    """The bundled sample's held-out files, as the dialog's prefilled fields."""
    from ...core.paths import sample_data_dir

    prefs = sample_data_dir() / "prefs"
    return {"prompts": str(prefs / "heldout_prompts.txt"), "facts": str(prefs / "heldout_facts.jsonl"),
            "pairs": str(prefs / "heldout_pairs.jsonl")}


def judge_problem(text: str) -> str:
    """"" when ``text`` is empty (no judge) or a valid spec; else what is wrong."""
    if not text.strip():
        return ""
    from ...core.judge import parse_judge_spec

    try:
        parse_judge_spec(text)
    except UserError as exc:
        what = "; ".join(p.message for p in exc.problems) or exc.summary  # the field is the judge's own: no "--judge"
        return what + (f" ({exc.hint})" if exc.hint else "")
    return ""


def whole_number(text: str, name: str, least: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text.strip()!r}", hint=f"for example {max(least, 3)}") from None
    if value < least:
        raise UserError(f"{name} must be at least {least}", hint=f"for example {max(least, 3)}")
    return value


@dataclass
class EvalRequest:
    """The dialog's fields as ``plan_eval`` arguments."""

    run_ids: list[str]
    prompts: str = ""
    facts: str = ""
    pairs: str = ""
    judge: str = ""
    samples: str = "3"
    tokens: str = "128"
    checkpoint: str = "final"

    def arguments(self) -> dict[str, Any]:
        """Raises UserError for a field that cannot be right (before any file is read)."""
        problem = judge_problem(self.judge)
        if problem:
            raise UserError(f"judge: {problem}")

        def path(text: str) -> Path | None:
            return Path(text.strip()).expanduser() if text.strip() else None

        return {"prompts": path(self.prompts), "facts": path(self.facts), "pairs": path(self.pairs),
                "judge": self.judge.strip() or None, "samples": whole_number(self.samples, "samples", 0),
                "max_new_tokens": whole_number(self.tokens, "max tokens", 1), "checkpoint": self.checkpoint}


CONSOLE_WORDS = (  # the plan speaks to the command line; the dialog's operator has fields, not flags
    ("give --prompts FILE", "fill in the prompts field"),
    ("--prompts", "the prompts field"), ("--facts", "the facts field"), ("--pairs", "the pairs field"),
    ("--judge", "the judge field"), ("--samples", "samples"), ("--max-new-tokens", "max tokens"),
)


def console_wording(text: str) -> str:
    """``text`` (a rendered refusal of ``plan_eval``) with the CLI's flags named as the dialog's fields."""
    for flag, field_name in CONSOLE_WORDS:
        text = text.replace(flag, field_name)
    return text


def start_request(runs_root: Path, request: EvalRequest) -> Path:
    """Plan and launch the evaluation; UserError says why not (blocking: call it from a thread worker)."""
    from ...core.eval.jobs import plan_eval, start_eval

    plan = plan_eval(runs_root, request.run_ids, **request.arguments())
    return start_eval(plan)


class EvalDialog(ModalScreen[Path | None]):
    BINDINGS = [
        Binding("enter", "start", "Start", id="evaldialog.start", tooltip="Start the evaluation (detached)"),
        Binding("escape", "cancel", "Cancel", id="evaldialog.cancel", tooltip="Close without evaluating"),
    ]

    @dataclass
    class Started(Message):
        """The evaluation's job folder, or why it could not start. Posted once by the ``eval-start`` worker."""

        job_dir: Path | None
        error: str = ""

    def __init__(self, run_ids: list[str], runs_root: Path, prefill: dict[str, str] | None = None) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.runs_root = Path(runs_root)
        self.prefill = dict(prefill or {})
        self.starting = False
        self.error = ""

    def compose(self) -> ComposeResult:
        what = self.run_ids[0] if len(self.run_ids) == 1 else f"{len(self.run_ids)} runs (base evaluated once)"
        defaults = {"samples": "3", "tokens": "128", **self.prefill}
        with Vertical(id="evaldialog-box"):
            yield Label(Text(f"Evaluate {what} against its base", no_wrap=True, overflow="ellipsis"), id="evaldialog-title")
            for key, label, placeholder in FIELDS:
                with Horizontal(classes="evaldialog-row"):
                    yield Label(label, classes="evaldialog-label")
                    yield FieldInput(defaults.get(key, ""), id=f"evaldialog-{key}", placeholder=placeholder, compact=True)
                if key == "judge":
                    yield Static("", id="evaldialog-judge-error", markup=False)
            with Horizontal(classes="evaldialog-row"):
                yield Label("checkpoint", classes="evaldialog-label")
                yield Select([("final weights", "final"), ("best by eval loss", "best")], value="final",
                             allow_blank=False, id="evaldialog-checkpoint", compact=True)
            note = ("held-out files of the bundled sample" if self.prefill.get("prompts")
                    else "empty files: the run's eval split is used (a run without one needs a prompts file)")
            yield Static(note, id="evaldialog-note", markup=False)
            yield Static("", id="evaldialog-error", markup=False)
            yield Label(HINT, id="evaldialog-hint")

    def on_mount(self) -> None:
        self.query_one("#evaldialog-judge-error", Static).display = False
        self.query_one("#evaldialog-error", Static).display = False
        self.query_one("#evaldialog-prompts", Input).focus()

    def request(self) -> EvalRequest:
        values = {key: self.query_one(f"#evaldialog-{key}", Input).value for key, _, _ in FIELDS}
        checkpoint = str(self.query_one("#evaldialog-checkpoint", Select).value)
        return EvalRequest(self.run_ids, checkpoint=checkpoint, **values)

    def _show(self, selector: str, text: str) -> None:
        widget = self.query_one(selector, Static)
        widget.update(f"✗ {text}" if text else "")
        widget.display = bool(text)

    @on(Input.Changed, "#evaldialog-judge")
    def _judge_changed(self, event: Input.Changed) -> None:
        self._show("#evaldialog-judge-error", judge_problem(event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def action_start(self) -> None:
        if self.starting:
            return
        request = self.request()
        try:
            request.arguments()
        except UserError as exc:
            self.error = exc.render()
            self._show("#evaldialog-error", self.error)
            return
        self.starting = True
        self._show("#evaldialog-error", "")
        self.query_one("#evaldialog-hint", Label).update("planning and starting the evaluation…")
        self._start(self.runs_root, request)

    @work(thread=True, exclusive=True, group="eval-start", exit_on_error=False, description="start the evaluation")
    def _start(self, runs_root: Path, request: EvalRequest) -> None:
        try:
            self.post_message(self.Started(start_request(runs_root, request)))
        except UserError as exc:
            self.post_message(self.Started(None, console_wording(exc.render())))
        except (OSError, ImportError) as exc:
            self.post_message(self.Started(None, f"Could not start the evaluation: {first_line(exc)}"))

    def on_eval_dialog_started(self, message: Started) -> None:
        if message.job_dir is not None:
            self.dismiss(message.job_dir)
            return
        self.starting = False
        self.error = message.error
        self._show("#evaldialog-error", message.error)
        self.query_one("#evaldialog-hint", Label).update(HINT)

    def action_cancel(self) -> None:
        self.dismiss(None)


def run_prefill(runs_root: Path, run_ids: list[str]) -> dict[str, str]:
    """The sample's held-out files when every run trained on the bundled sample; else nothing."""
    from ...core.runs import Run

    try:
        if run_ids and all(Run(runs_root / run_id).config().dataset == "sample" for run_id in run_ids):
            return sample_files()
    except (UserError, OSError):
        pass  # an unreadable run: the plan names it when the operator starts
    return {}


def open_eval(screen: Any, run_ids: list[str]) -> None:
    """Open the dialog for ``run_ids``; a started evaluation is followed on the runs screen."""
    from ..eval_watch import follow_eval

    if not run_ids:
        return
    root = screen.services.runs_root

    def started(job_dir: Path | None) -> None:
        if job_dir is not None:
            follow_eval(screen.app, job_dir)

    screen.app.push_screen(EvalDialog(run_ids, root, run_prefill(root, run_ids)), started)


def open_results(screen: Any, run_ids: list[str]) -> None:
    """The Eval view of one run, or the trade-off view of several (a β ladder's group)."""
    if len(run_ids) == 1:
        from .eval_view import EvalViewScreen

        screen.app.push_screen(EvalViewScreen(run_ids[0]))
    elif run_ids:
        from .eval_tradeoff import TradeoffScreen

        screen.app.push_screen(TradeoffScreen(run_ids))
