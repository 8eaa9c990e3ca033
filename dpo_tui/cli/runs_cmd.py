"""Run commands: ``train``, ``runs``, ``attach``, ``stop``, ``resume``, ``delete``.

``train`` validates, creates the run folder, starts it detached and returns at once (``--follow``
watches it; Ctrl-C or a hung-up terminal only detaches). Every RunConfig field is also a flag
(``--lora-dropout 0.1``), generated from the model so the two never drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..core import events as ev
from ..core import paths
from ..core import runs as runs_mod
from ..core.config import FREE_TEXT_LISTS, RunConfig, load_config
from ..core.config_fields import field_kind
from ..core.errors import UserError
from ..core.init_adapter import resolve_init_adapter
from ..core.mapping import parse_map
from ..core.numfmt import column_widths, num, steps
from ..core.preflight import check_inputs, preflight_warnings
from ..core.remote_code import trust_remote_code_warning
from ..core.run_defaults import default_config
from ..core.run_states import state_label
from ..core.runs.resolve import resolve_run
from . import add_runs_dir
from .follow import ProgressLine, detach_on_interrupt

# Short aliases operators expect, beside the generated --field-name flags.
ALIASES = {
    "per_device_batch_size": ["--batch-size"],
    "gradient_accumulation": ["--grad-accum"],
    "learning_rate": ["--lr"],
    "num_epochs": ["--epochs"],
    "lora_target_modules": ["--lora-targets"],
}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (plus aliases), all defaulting to 'not given'."""
    group = parser.add_argument_group("run settings (override the config file; see docs/config.md)")
    group.add_argument("--config", metavar="FILE.toml", help="load settings from a TOML or JSON file")
    group.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN", help="dataset column mapping, e.g. prompt=question")
    for name, info in RunConfig.model_fields.items():
        kind = field_kind(name)
        if kind.kind == "dict" or (kind.kind == "text" and kind.scalar is None):
            continue  # column_map has --map; nothing else is a dict or an unflaggable type
        flags = [f"--{name.replace('_', '-')}", *ALIASES.get(name, [])]
        help_text = (info.description or "").split(". ")[0]
        if kind.kind == "bool":
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind.kind == "list" and kind.item_type is str and name in FREE_TEXT_LISTS:
            # Free text may contain commas: repeat the flag instead.
            group.add_argument(*flags, dest=name, action="append", default=None, metavar="TEXT", help=help_text + " (repeatable)")
        elif kind.kind == "list":
            group.add_argument(*flags, dest=name, default=None, metavar="A,B", help=help_text + " (comma-separated)")
        else:
            choices = kind.choices if kind.closed else None
            group.add_argument(*flags, dest=name, type=kind.scalar or str, default=None, choices=choices, help=help_text)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides: dict[str, Any] = {}
    for name in RunConfig.model_fields:
        value = getattr(args, name, None)
        if value is None:
            continue
        kind = field_kind(name)
        if kind.kind == "list" and not isinstance(value, list):  # a repeatable free-text flag arrives as a list
            items = [v.strip() for v in str(value).split(",") if v.strip()]
            try:
                value = [kind.item_type(v) for v in items]
            except ValueError:
                raise UserError(f"--{name.replace('_', '-')}: expected a comma-separated list of {kind.item_type.__name__}") from None
        overrides[name] = value
    if args.map:
        overrides["column_map"] = parse_map(args.map)
    if args.config:
        return load_config(args.config, overrides)
    return default_config(overrides)  # no config file: the sample experiment's settings for the sample model


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    root = paths.runs_root(args.runs_dir)
    config, adapter_notes = resolve_init_adapter(config, root)  # --init-adapter RUN or FOLDER → its absolute folder
    check_inputs(config)
    for warning in [*adapter_notes, *preflight_warnings(config)]:
        print(f"Warning: {warning}", file=sys.stderr)
    if config.trust_remote_code:
        print(f"Warning: {trust_remote_code_warning(config.model)}", file=sys.stderr)
    run = runs_mod.create_run(root, config)
    try:
        runs_mod.launch(run)
    except OSError as exc:
        run.update_status(state="failed", kind="crash", message=f"could not start the supervisor: {exc}")
        raise UserError(f"Could not start run {run.id}: {exc}") from None
    print(run.id)
    sys.stdout.flush()
    if args.follow:
        return follow(run)
    print(f"Started in the background. Follow it with: dpo-tui attach {run.id}", file=sys.stderr)
    return 0


# --- following a run ---------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def progress_line(history: ev.RunHistory, status: runs_mod.RunStatus, width: int = 24) -> str:
    total = history.max_steps or status.max_steps or 0
    step = history.step or status.step or 0  # status.json's step when the event log says nothing
    frac = min(1.0, step / total) if total else 0.0
    bar = "█" * int(frac * width) + "░" * (width - int(frac * width))
    phase = status.phase if status.state in ("queued", "starting") or not history.started else ""
    return (
        f"{status.state:<8} [{bar}] {step}/{total or '?'}  ETA {_eta(history.eta_seconds())}  "
        f"loss {_fmt(history.latest('loss'))}  margin {_fmt(history.latest('rewards/margins'))}  "
        f"acc {_fmt(history.latest('rewards/accuracies'), '.2f')}" + (f"  ({phase})" if phase else "")
    )


def follow(run: runs_mod.Run, poll: float = 0.5) -> int:
    """Show progress until the run ends. Ctrl-C or a hang-up detaches; the run keeps going."""
    reader = ev.EventReader(run.events_path)
    history = ev.RunHistory()
    out = ProgressLine()
    try:
        with detach_on_interrupt() as detached:
            while not detached():
                history.apply(reader.read_new())
                status = run.status()
                if status.state in runs_mod.TERMINAL_STATES:
                    history.apply(reader.read_new())
                    out.show(progress_line(history, status), final=True)
                    print(outcome_line(run, status, history), flush=True)
                    if reader.error:
                        print(f"Warning: cannot read the run's event log ({reader.error}); the step above comes from "
                              "status.json and no metrics are shown", file=sys.stderr)
                    return {"finished": 0, "stopped": 3}.get(status.state, 1)
                out.show(progress_line(history, status))
                time.sleep(poll)
            out.close()
            print(f"Detached; the run continues. Reattach with: dpo-tui attach {run.id}", file=sys.stderr)
            return 0
    except BrokenPipeError:
        return 0


def outcome_line(run: runs_mod.Run, status: runs_mod.RunStatus, history: ev.RunHistory) -> str:
    term = history.terminal or {}
    if status.state == "finished":
        weights = run.final_weights_dir()
        kind = "model" if weights is not None and weights == run.model_dir else "adapter"
        where = f"{kind} in {weights}" if weights else f"no complete final weights in {run.path}"
        return f"Finished {run.id} at step {history.step or status.step}: {where}"
    if status.state == "stopped":
        return f"Stopped {run.id} at step {status.step}. {status.hint or term.get('hint') or ''}".strip()
    kind = status.kind or term.get("kind") or "crash"
    message = status.message or term.get("message") or ""
    hint = status.hint or term.get("hint") or ""
    return f"{status.state.capitalize()} ({kind}) {run.id}: {message}" + (f"\nHint: {hint}" if hint else "")


def cmd_attach(args: argparse.Namespace) -> int:
    run = resolve_run(paths.runs_root(args.runs_dir), args.run_id)
    return follow(run)


SEEN_FILE = ".seen.json"


def changed_since_last_look(root: Path, summaries: list[runs_mod.RunSummary]) -> set[str]:
    """Runs whose state changed since the last `dpo-tui runs` (remembered in the runs root)."""
    from ..core.fsutil import atomic_write_json
    from ..core.runs.status import loads_strict, read_regular

    seen_path = root / SEEN_FILE
    try:
        seen = loads_strict(read_regular(seen_path))  # never a FIFO's blocking open, nor a huge file
    except (OSError, ValueError):
        seen = {}
    if not isinstance(seen, dict):
        seen = {}
    changed = {s.id for s in summaries if seen and seen.get(s.id) != s.state}
    try:
        atomic_write_json(seen_path, {s.id: s.state for s in summaries})
    except OSError:
        pass  # a read-only runs root still lists
    return changed


def _when(t: float | None) -> str:
    try:
        return time.strftime("%m-%d %H:%M", time.localtime(t)) if t else "—"
    except (OverflowError, OSError, ValueError):
        return "—"


def eval_summary(run_path: Path) -> dict[str, Any] | None:
    """The newest evaluation report's summary numbers (None when the run has no readable report)."""
    from ..core.eval.report import latest_report

    report = latest_report(run_path)
    return report.summary() if report is not None else None


def cmd_runs(args: argparse.Namespace) -> int:
    root = paths.runs_root(args.runs_dir)
    summaries = runs_mod.list_runs(root)
    changed = changed_since_last_look(root, summaries) if root.is_dir() else set()
    if args.json:
        listed = [{**s.as_json(), "changed": s.id in changed, "eval": eval_summary(s.path)} for s in summaries]
        print(json.dumps(listed, indent=2, allow_nan=False, default=str))
        return 0
    if not summaries:
        print(f"No runs in {root}. Start one with: dpo-tui train")
        return 0
    shown = runs_mod.printable  # a folder name or message may hold escape sequences: never print them raw
    header = ["ID", "STATE", "STEP", "β", "RANK", "LOSS", "MARGIN", "STARTED"]
    rows = [
        [
            shown(s.id), state_label(s.state, s.kind) + ("!" if s.stalled else ""), steps(s.step, s.max_steps) if s.max_steps else f"{s.step}/?",
            num(s.beta), "full" if s.method == "full" else str(s.lora_rank or "—"), num(s.loss, zeros=True), num(s.margin, zeros=True),
            _when(s.started_at or s.created_at),
        ]
        for s in summaries
    ]
    widths = column_widths(header, rows)
    right = {2, 3, 4, 5, 6}  # numbers line up on their last digit

    def line(cells: list[str]) -> str:
        return " ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print("  " + line(header))
    for s, row in zip(summaries, rows, strict=True):
        mark = "* " if s.id in changed else "  "
        print(mark + line(row))
        if s.state == "unreadable":
            print(f"    unreadable: {shown(s.error or '')}")
        elif s.state in ("failed", "crashed") and (s.message or s.kind):
            print(f"    {shown(s.kind or '')}: {shown(s.message or '')}")
    note = f"; * = changed since you last looked ({len(changed)})" if changed else ""
    print(f"\n{len(summaries)} run(s) in {root}{note}")
    return 0


def active_runs_text(summaries: list[runs_mod.RunSummary]) -> str:
    """What keeps going after the console quits, and how to get back to it; empty when nothing does."""
    active = [s for s in summaries if s.state in runs_mod.ACTIVE_STATES]
    if not active:
        return ""
    lines = [f"{len(active)} run(s) keep going in the background:"]
    for s in active:
        lines.append(f"  {runs_mod.printable(s.id)}  {state_label(s.state, s.kind)}  {steps(s.step, s.max_steps)}")
    lines.append(f"Follow one with: dpo-tui attach {runs_mod.printable(active[0].id)}   (stop: dpo-tui stop ID)")
    return "\n".join(lines)


def still_running_note(runs_dir: str | None) -> str:
    try:
        return active_runs_text(runs_mod.list_runs(paths.runs_root(runs_dir)))
    except (UserError, OSError):
        return ""  # the console already said what is wrong with the runs root


def cmd_stop(args: argparse.Namespace) -> int:
    run = resolve_run(paths.runs_root(args.runs_dir), args.run_id)
    status = runs_mod.stop(run, now=args.now, wait=args.wait, escalate_after=args.timeout if args.wait else None)
    if status.state in runs_mod.TERMINAL_STATES:
        print(f"{run.id}: {status.state}" + (f" ({status.hint})" if status.hint else ""))
    else:
        print(f"{run.id}: stop requested; it saves a checkpoint at the next step and ends 'stopped'. `dpo-tui stop --now {run.id}` kills it.")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run = resolve_run(paths.runs_root(args.runs_dir), args.run_id)
    ckpt = runs_mod.resume(run)
    print(f"Resuming {run.id} from {ckpt.path.name} (step {ckpt.step})")
    if args.follow:
        return follow(run)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    run = resolve_run(paths.runs_root(args.runs_dir), args.run_id)
    if not args.yes:
        raise UserError(f"Deleting {run.id} removes its checkpoints and adapter for good", hint="add --yes to confirm")
    if runs_mod.delete(run):
        print(f"Removed the link {runs_mod.printable(run.id)}; the folder it pointed to is left as it is")
    else:
        print(f"Deleted {runs_mod.printable(run.id)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="start a DPO run in the background", description=cmd_train.__doc__)
    add_runs_dir(train)
    add_config_flags(train)
    train.add_argument("--follow", "-f", action="store_true", help="show progress until the run ends (Ctrl-C detaches)")
    train.set_defaults(func=cmd_train)

    runs = sub.add_parser("runs", help="list runs, newest first")
    add_runs_dir(runs)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    attach = sub.add_parser("attach", help="follow a run (Ctrl-C detaches)")
    add_runs_dir(attach)
    attach.add_argument("run_id", metavar="RUN", help="run id, id prefix, folder, or the --name it was started with")
    attach.set_defaults(func=cmd_attach)

    stop = sub.add_parser("stop", help="stop a run gracefully (checkpoint, then 'stopped')")
    add_runs_dir(stop)
    stop.add_argument("run_id", metavar="RUN", help="run id, id prefix, folder, or the --name it was started with")
    stop.add_argument("--now", action="store_true", help="kill at once (SIGKILL); no final checkpoint")
    stop.add_argument("--wait", type=float, default=60.0, metavar="S", help="seconds to wait for the run to end (default 60)")
    stop.add_argument("--timeout", type=float, default=50.0, metavar="S", help="escalate to SIGKILL after S seconds of waiting")
    stop.set_defaults(func=cmd_stop)

    resume = sub.add_parser("resume", help="resume a stopped/failed/crashed run from its newest complete checkpoint")
    add_runs_dir(resume)
    resume.add_argument("run_id", metavar="RUN", help="run id, id prefix, folder, or the --name it was started with")
    resume.add_argument("--follow", "-f", action="store_true")
    resume.set_defaults(func=cmd_resume)

    delete = sub.add_parser("delete", help="delete a run folder (never a running run)")
    add_runs_dir(delete)
    delete.add_argument("run_id", metavar="RUN", help="run id, id prefix, folder, or the --name it was started with")
    delete.add_argument("--yes", action="store_true")
    delete.set_defaults(func=cmd_delete)
