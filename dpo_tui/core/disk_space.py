"""Will these files fit? One check for the export dialog's preflight and the export worker.

Destinations are grouped by the device they land on (two outputs on one disk add up), each group is
checked against that disk's free space plus a margin, and a shortfall is a :class:`UserError` that says
what, where and how much, before anything is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import UserError
from .export_plan import human_bytes

SPACE_MARGIN = 16 * 1024 * 1024
"""Room left over beyond the estimate: metadata, a tokenizer, a model card."""


def existing_parent(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (where its disk can be asked)."""
    probe = path.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_space(needs: list[tuple[str, Path, int]], free_of: Callable[[Path], int] | None = None) -> list[str]:
    """``needs`` is ``(what, destination, bytes)``. Raises when a disk is too small; else one line per disk
    (``disk: writes about 1.2 GiB to /x (40 GiB free)``). ``free_of`` is injectable for tests."""
    free_of = free_of or (lambda p: shutil.disk_usage(p).free)
    by_device: dict[int, tuple[Path, int, list[str]]] = {}
    for what, dest, size in needs:
        probe = existing_parent(dest)
        try:
            dev = probe.stat().st_dev
        except OSError:
            continue
        where, total, labels = by_device.get(dev, (probe, 0, []))
        by_device[dev] = (where, total + size, [*labels, what])
    lines = []
    for where, total, labels in by_device.values():
        try:
            free = free_of(where)
        except OSError:
            continue
        need = total + SPACE_MARGIN
        if free < need:
            raise UserError(
                f"Not enough disk space for the {' and '.join(labels)} at {where}: "
                f"needs about {human_bytes(need)}, {human_bytes(free)} free",
                hint="free some space or choose a destination on another disk; nothing was written",
            )
        lines.append(f"disk: writes about {human_bytes(total)} to {where} ({human_bytes(free)} free)")
    return lines
