"""Small real filesystems for fault tests: a tmpfs of a chosen size (full disks, read-only roots).

Tests run as root here and in CI, so file modes do not stop writes; a mounted filesystem does. Where the
mount is refused (no privilege), the test is skipped with the reason, never passed silently.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(where: Path, size: str, options: str = "") -> Iterator[Path]:
    """Mount a ``size`` tmpfs at ``where`` (created if needed) for the ``with`` block, then unmount it."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"{options},size={size}" if options else f"size={size}"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or 'mount refused'}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
