"""Lock files and folder locks under a runs root, opened so a planted file can never redirect them.

A runs root may be shared (several users, a group-writable folder), so anything found in it is
untrusted: a lock path that is a symlink, a hard link to some other file, a FIFO or a directory is
refused with a :class:`UserError` instead of being followed, blocked on, or overwritten.

* :func:`locks_dir` checks ``<root>/.locks`` (a real directory, never a symlink) and creates it.
* :func:`open_lock` opens one lock file there (``O_NOFOLLOW``, no ``O_TRUNC``) and returns its fd;
  the caller ``flock``\\ s it. A flock follows the open file description, so a child that inherits
  the fd keeps the lock alive after the opener dies.
* :func:`run_lock` serialises check-and-set changes to one run (resume) with a flock on the run
  folder itself: no extra file in the folder, and it dies with its holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError
from .runs.folder import LOCKS_DIR

_FIX = "remove it (only dpo-tui writes there; it is recreated as needed)"


def locks_dir(root: Path) -> Path:
    """``<root>/.locks`` as a real directory (created if missing); a UserError if something else is there."""
    path = root / LOCKS_DIR
    try:
        info = path.lstat()
    except FileNotFoundError:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create the lock folder {path}: {exc.strerror or exc}",
                            hint="check the runs root is writable and has free space") from None
        info = path.lstat()
    except OSError as exc:
        raise UserError(f"Cannot read the lock folder {path}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"The lock folder {path} is a symlink; refusing to follow it", hint=_FIX)
    if not stat.S_ISDIR(info.st_mode):
        raise UserError(f"The lock folder {path} is not a folder ({_kind(info.st_mode)})", hint=_FIX)
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "an unknown file type"


def open_lock(path: Path) -> int:
    """Open (creating) a lock file without following a symlink or blocking on a FIFO; its fd (close-on-exec).

    Only a regular file with a single link is accepted: anything else may stand for a file outside
    the root that writing the holder's id into would damage.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"The lock file {path} is a symlink; refusing to follow it", hint=_FIX) from None
        if exc.errno == errno.EISDIR:
            raise UserError(f"The lock file {path} is a folder", hint=_FIX) from None
        raise UserError(f"Cannot open the lock file {path}: {exc.strerror or exc}",
                        hint="check the runs root is writable and has free space") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = _kind(info.st_mode) if not stat.S_ISREG(info.st_mode) else f"a file with {info.st_nlink} hard links"
        raise UserError(f"The lock file {path} is {what}, not a lock file", hint=_FIX)
    os.set_blocking(fd, True)
    return fd


def write_holder(fd: int, text: str) -> None:
    """Record who holds the lock (informational: the flock is what counts) in the file ``open_lock`` checked."""
    data = text.encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))  # the fd is the checked regular file, never a link to elsewhere


def read_holder(path: Path) -> str | None:
    """The first word of a lock file (a run id), read without following a symlink or blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        words = os.read(fd, 4096).decode("utf-8", "replace").split()
    except OSError:
        return None
    finally:
        os.close(fd)
    return words[0] if words else None


def try_run_lock(run_dir: Path) -> int | None:
    """Take the exclusive flock on a run folder without waiting: its fd (close it to release), or ``None``
    when another command or console holds it. A UserError when the folder cannot be opened."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"No run at {run_dir}") from None
    except OSError as exc:
        raise UserError(f"Cannot open the run folder {run_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def run_lock(run_dir: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on a run folder, or raise a UserError naming ``what`` is already under way."""
    fd = try_run_lock(run_dir)
    if fd is None:
        # The holder may be a stop, a resume or a delete: say what was refused, not a guess at what holds it.
        raise UserError(f"Run {run_dir.name} is busy: another command or console is stopping, resuming or deleting it, "
                        f"so {what} it now could undo that",
                        hint=f"try again in a few seconds; `dpo-tui attach {run_dir.name}` shows what it is doing")
    try:
        yield
    finally:
        os.close(fd)
