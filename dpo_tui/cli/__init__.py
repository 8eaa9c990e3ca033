"""The ``dpo-tui`` command. With no subcommand it opens the console.

Every console action is also a plain subcommand, so what works in the TUI works in a script:
``train runs attach stop resume data estimate chat export compare ladder pairs``. Each subcommand
lives in its own module with a ``register(subparsers)`` function; modules import only the
light core at import time so ``dpo-tui --help`` stays instant.

Errors an operator can fix are printed as one paragraph with exit code 2; tracebacks never
reach the terminal (set ``DPO_TUI_DEBUG=1`` to see them).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ..core.errors import EXIT_USAGE, UserError

# Subcommand modules, in help order. Each has register(subparsers).
SUBCOMMAND_MODULES = ("runs_cmd", "data", "estimate", "chat", "export", "compare", "ladder", "pairs")


def plain_help(text: str) -> str:
    """Docstring text as an operator reads it: reST literals (````loss_type````) without their backquotes."""
    return re.sub(r"``([^`]*)``", r"\1", text)


class _PlainHelp:
    """Help texts come from field docstrings: drop their reST markup, and keep a literal ``%`` (``~30 %
    slower``) from being read as argparse's ``%(default)s`` interpolation (which printed a dict)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain_help(super()._get_help_string(action) or "")  # type: ignore[misc]
        return re.sub(r"%(?!\()", "%%", text)

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_help(text))  # type: ignore[misc]


class _HelpFormatter(_PlainHelp, argparse.HelpFormatter):
    pass


class _RawHelpFormatter(_PlainHelp, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-paragraph message (its default) but never a traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raw = kwargs.get("formatter_class") is argparse.RawDescriptionHelpFormatter
        kwargs["formatter_class"] = _RawHelpFormatter if raw else _HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"dpo-tui: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", metavar="DIR", help="runs root (default: $DPO_TUI_HOME/runs or ~/.local/share/dpo-tui/runs)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="dpo-tui", description="A terminal experiment console for DPO fine-tuning.")
    parser.add_argument("--version", action="version", version=f"dpo-tui {__version__}")
    add_runs_dir(parser)
    parser.add_argument("--model", help="preselect a model in the console (path, hub id, or 'sample')")
    parser.add_argument("--dataset", help="preselect a dataset in the console")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    ui = sub.add_parser("ui", help="open the console (the default)")
    add_runs_dir(ui)
    ui.add_argument("--model")
    ui.add_argument("--dataset")
    ui.set_defaults(func=_run_ui)
    for name in SUBCOMMAND_MODULES:
        # No try: a subcommand module of our own that fails to import is a bug, and skipping it
        # would only turn that into a confusing "invalid choice" for the operator.
        importlib.import_module(f"{__name__}.{name}").register(sub)
    parser.set_defaults(func=_run_ui)
    return parser


def _run_ui(args: argparse.Namespace) -> int:
    from ..ui.app import run_app
    from .runs_cmd import still_running_note

    code = run_app(runs_dir=args.runs_dir, model=getattr(args, "model", None), dataset=getattr(args, "dataset", None))
    # After Textual has given the terminal back: runs are detached and outlive the console, and
    # leaving silently would let an operator think quitting stopped them.
    note = still_running_note(args.runs_dir)
    if note:
        sys.stderr.write(note + "\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except UserError as exc:
        sys.stderr.write(f"dpo-tui: {exc.render()}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("dpo-tui: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # last line of defence: no raw traceback for operators
        if os.environ.get("DPO_TUI_DEBUG"):
            raise
        sys.stderr.write(
            f"dpo-tui: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in dpo-tui. Re-run with DPO_TUI_DEBUG=1 to see the traceback, and report it.\n"
        )
        return 1
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
