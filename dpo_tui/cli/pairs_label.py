"""``dpo-tui pairs label``: choose chosen/rejected per prompt (registered into ``dpo-tui pairs``)."""

from __future__ import annotations

import argparse


def register_label(sub: argparse._SubParsersAction) -> None:
    """Add the ``label`` action to the ``pairs`` subparsers."""
