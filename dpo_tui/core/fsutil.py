"""Durable file writes: nothing is ever half-written where a reader can see it.

Writes go to a temporary file in the same folder, are fsync'd, then renamed over the
target with ``os.replace`` (atomic on POSIX within one filesystem), and the folder is
fsync'd so the rename itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

JSON_ERRORS: tuple[type[ValueError], type[RecursionError]] = (ValueError, RecursionError)
"""What parsing damaged JSON raises: ``ValueError`` (``JSONDecodeError``, ``UnicodeDecodeError``) for bad text, and
``RecursionError`` for a document nested deeper than the parser's stack (``"[" * 100000``), which is no
``ValueError``. Every reader of a file an operator or a crash can damage catches this tuple."""


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable. Best effort on filesystems without dir fsync."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Write ``path`` through a handle; readers see the old file or the whole new one, never a part.

    The temp file is created with mode 0666 minus the process umask, like a plain ``open()``; the umask is never
    changed (``os.umask`` is process-wide: changing it even briefly races with other threads creating files).
    On any failure the temp file is removed and the old file stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it process-wide, racing other
    threads that create files). Linux reports it in /proc; elsewhere the common 022 is assumed."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def follow_umask(path: Path | str) -> None:
    """Give ``path`` (and everything under it) the modes a plain ``open()``/``mkdir()`` would have.

    Libraries that write atomically through a private temp file (safetensors' ``save_file`` does) leave
    it 0600, so exported weights would be unreadable to the rest of a shared box while every other
    file of the run folder follows the umask.
    """
    mask = current_umask()
    root = Path(path)
    items = [root]
    if root.is_dir() and not root.is_symlink():
        items += [Path(d) / n for d, dirs, files in os.walk(root) for n in (*dirs, *files)]
    for item in items:
        if item.is_symlink():
            continue
        with contextlib.suppress(OSError):
            executable = item.is_dir() or os.stat(item).st_mode & 0o111
            os.chmod(item, (0o777 if executable else 0o666) & ~mask)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """JSON with NaN/Inf refused (strict readers reject bare NaN)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path | str) -> Any:
    """The parsed file; raises ``OSError`` or one of :data:`JSON_ERRORS`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def make_unique_dir(root: Path, base: str, limit: int = 1000) -> Path | None:
    """Create ``root/base``, or ``base-2``, ``base-3``… when taken, and return it; None after ``limit``
    names. ``mkdir`` is the claim, so two processes never get the same folder. Other OSErrors propagate."""
    for n in range(1, limit):
        candidate = root / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    return None
