"""Progress events, all-or-nothing outputs, and turning write failures into operator messages.

Every output is written to a hidden temporary sibling (:class:`Staging`) and renamed into place only
when all of them are complete. :func:`check_free_space` refuses before anything is written;
:func:`write_failure` explains a failure that happens anyway (full disk, permission, read-only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.errors import UserError, first_line
from ...core.fsutil import follow_umask, fsync_dir

Reporter = Callable[[dict[str, Any]], None]


class Progress:
    """Emits progress events to a callback; keeps the warnings for the final report."""

    def __init__(self, sink: Reporter | None = None) -> None:
        self.sink = sink or (lambda event: None)
        self.warnings: list[str] = []

    def stage(self, stage: str, message: str) -> None:
        self.sink({"type": "stage", "stage": stage, "message": message})

    def progress(self, stage: str, done: int, total: int, message: str = "") -> None:
        self.sink({"type": "progress", "stage": stage, "done": done, "total": total, "message": message})

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.sink({"type": "warning", "message": message})


class Staging:
    """Temporary siblings for each output, renamed into place together by :meth:`commit`.

    An output inside another one (a GGUF inside the merged or Ollama folder) is written inside that
    folder's temporary copy. :meth:`abort` removes every temporary and any parent folder it created.
    """

    def __init__(self, force: bool) -> None:
        self.force = force
        self.entries: list[tuple[Path, Path, bool]] = []  # (final, temp, is_dir)
        self.created_parents: list[Path] = []
        self.committed = False

    def _make_parents(self, path: Path) -> None:
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self.created_parents.append(folder)

    def _temp_name(self, final: Path) -> Path:
        return final.with_name(f".{final.name}.partial-{os.getpid()}")

    def add_dir(self, final: Path) -> Path:
        self._make_parents(final)
        temp = self._temp_name(final)
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        self.entries.append((final, temp, True))
        return temp

    def path_for(self, final: Path) -> Path:
        """Where to write ``final`` now: inside a staged folder, or a temp file beside it."""
        for staged_final, temp, is_dir in self.entries:
            if is_dir:
                with contextlib.suppress(ValueError):
                    return temp / final.relative_to(staged_final)
        self._make_parents(final)
        temp = self._temp_name(final)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        self.entries.append((final, temp, False))
        return temp

    def commit(self) -> None:
        """Move every output into place; replaced old outputs are removed only after all renames."""
        old: list[tuple[Path, Path]] = []
        done: list[tuple[Path, Path, bool]] = []
        try:
            for final, temp, is_dir in self.entries:
                if not temp.exists():
                    continue
                follow_umask(temp)  # weights saved by safetensors arrive 0600
                if final.exists() or final.is_symlink():
                    if not self.force:
                        raise UserError(f"{final} appeared while exporting", hint="--force replaces it")
                    aside = final.with_name(f".{final.name}.old-{os.getpid()}")
                    os.replace(final, aside)
                    old.append((final, aside))
                os.replace(temp, final)
                done.append((final, temp, is_dir))
        except BaseException:
            for final, temp, _ in reversed(done):
                with contextlib.suppress(OSError):
                    os.replace(final, temp)
            for final, aside in reversed(old):
                with contextlib.suppress(OSError):
                    os.replace(aside, final)
            raise
        self.committed = True
        for _, aside in old:
            _remove(aside)
        for final, _, _ in self.entries:
            fsync_dir(final.parent)

    def abort(self) -> None:
        if self.committed:
            return
        for _, temp, _ in self.entries:
            _remove(temp)
        for folder in reversed(self.created_parents):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


# numpy's tofile reports a short write (the disk filled up) without an errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def errno_of(exc: BaseException) -> int | None:
    """The OS error behind an exception, also when a library wrapped it in its own type (safetensors, torch)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current.errno
        text = str(current)
        if "No space left on device" in text or "os error 28" in text or _SHORT_WRITE.search(text):
            return errno.ENOSPC
        if "Permission denied" in text or "os error 13" in text:
            return errno.EACCES
        if "Read-only file system" in text or "os error 30" in text:
            return errno.EROFS
        current = current.__cause__ or current.__context__
    return None


def write_failure(exc: BaseException, what: str, where: Path) -> UserError:
    """The operator's message for a failure while writing ``what`` to ``where`` (the partial output is gone)."""
    code = errno_of(exc)
    if code == errno.ENOSPC:
        return UserError(
            f"Export failed: the disk is full while writing the {what} to {where}; the partial output was removed",
            hint="free some space or choose a destination on another disk, then export again",
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the file system is read-only" if code == errno.EROFS else "permission denied"
        return UserError(
            f"Export failed: cannot write the {what} to {where} ({reason}); the partial output was removed",
            hint="choose a folder you can write to",
        )
    detail = getattr(exc, "strerror", None) or first_line(exc)
    return UserError(f"Export failed while writing the {what} to {where}: {detail}; the partial output was removed")


def check_free_space(needs: list[tuple[str, Path, int]]) -> None:
    """Refuse early when a destination's disk cannot hold what will be written there."""
    from ...core.disk_space import check_space

    check_space(needs)
