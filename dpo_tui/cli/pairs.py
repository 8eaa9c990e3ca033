"""``dpo-tui pairs``: make preference pairs (label; generate lands with its own module)."""

from __future__ import annotations

import argparse
import sys

from ..core.errors import EXIT_USAGE
from . import pairs_label


def register(subparsers: argparse._SubParsersAction) -> None:
    pairs = subparsers.add_parser("pairs", help="make preference pairs from prompts",
                                  description="Make preference pairs: generate candidates, label them.")
    sub = pairs.add_subparsers(dest="pairs_command", metavar="ACTION", parser_class=type(pairs))
    pairs.set_defaults(func=lambda args: _no_action(pairs))
    pairs_label.register_label(sub)


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE
