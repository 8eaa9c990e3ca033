"""Following a detached run or job from the command line: one progress line, and Ctrl-C that only detaches.

``train --follow``/``attach``, ``pairs generate``/``pairs status --follow`` and ``eval`` all show one line that
changes while the work goes on. On a terminal it is redrawn in place; piped into a file it is printed when it
changes, at most every two seconds, so a log stays readable.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

CLEAR_LINE = "\r\x1b[K"
PIPED_EVERY_S = 2.0


def columns() -> int:
    return shutil.get_terminal_size((120, 24)).columns


class ProgressLine:
    """Shows successive versions of one line on ``stream``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self._last = ""
        self._last_time = 0.0
        self._open = False

    def show(self, line: str, final: bool = False) -> None:
        """Show ``line``; ``final`` ends it (a newline on a terminal, and always printed when piped)."""
        if self.tty:
            # A line wider than the terminal would wrap and leave its first half behind on every redraw.
            self.stream.write(CLEAR_LINE + line[: max(20, columns() - 1)] + ("\n" if final else ""))
            self.stream.flush()
            self._open = not final
        elif final or (line != self._last and time.time() - self._last_time > PIPED_EVERY_S):
            print(line, file=self.stream, flush=True)
            self._last, self._last_time = line, time.time()

    def close(self) -> None:
        """End a line left open on a terminal (before printing anything else)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


@contextlib.contextmanager
def detach_on_interrupt() -> Iterator[Callable[[], bool]]:
    """While inside, Ctrl-C and a hang-up only set a flag (the work is detached and keeps going); yields a
    function that says whether that happened."""
    detached = False

    def detach(_signum: int, _frame: Any) -> None:
        nonlocal detached
        detached = True

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # signals reach only the main thread (a command run in-process by a test)
        return
    old_int = signal.signal(signal.SIGINT, detach)
    old_hup = signal.signal(signal.SIGHUP, detach)
    try:
        yield lambda: detached
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGHUP, old_hup)
