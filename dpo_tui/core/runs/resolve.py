"""One resolver for every command that takes a run: its id, a unique id prefix, its folder path, or
the ``--name`` it was started with (a handle the operator chose, so ``stop r16`` works)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .folder import CONFIG_FILE, Run
from .listing import find_run, list_run_dirs, printable
from .status import loads_strict, read_regular


def run_name(folder: Path) -> str:
    """The ``name`` in a run's config.json; empty when it has none or the file cannot be read."""
    try:
        config = loads_strict(read_regular(folder / CONFIG_FILE))
    except (OSError, ValueError):
        return ""
    name = config.get("name") if isinstance(config, dict) else None
    return name if isinstance(name, str) else ""


def resolve_run(root: Path, handle: str) -> Run:
    """The run ``handle`` names. An exact id or a path wins; then a run name; then an id prefix.

    Two runs with the same name are refused with both ids listed: acting on the wrong one (stop,
    delete) cannot be undone.
    """
    if not handle or "\x00" in handle or "/" in handle:
        return find_run(root, handle)  # a path (or nothing): never a name
    try:
        folders = list_run_dirs(Path(root))
    except UserError:
        folders = []
    if any(folder.name == handle for folder in folders):
        return find_run(root, handle)
    named = [folder for folder in folders if run_name(folder) == handle]
    if len(named) == 1:
        return Run(named[0])
    if len(named) > 1:
        ids = ", ".join(printable(folder.name) for folder in named[:8]) + (" …" if len(named) > 8 else "")
        raise UserError(f"{len(named)} runs are named '{printable(handle)}': {ids}",
                        hint="give the run id instead (`dpo-tui runs` lists them)")
    return find_run(root, handle)
