"""The console's terminal driver: Textual's Linux driver, but a lost terminal ends the console.

When the terminal goes away without a SIGHUP (``tmux kill-session``, an SSH drop), stdin reads
return end-of-file, or fail with EIO, forever. The stock input loop treats an empty read as "nothing
yet" and selects again, spinning a core until someone kills the process. Here the input loop is
ours: end-of-file, EIO or EBADF asks the app to exit (runs are detached and keep training), and
SIGHUP does the same (:func:`install_hangup_handler`).
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
from codecs import getincrementaldecoder
from typing import Any

from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

LOST = {errno.EIO, errno.EBADF, errno.ENXIO}
"""Errors a read from a terminal gives once its other side is gone."""


class ConsoleDriver(LinuxDriver):
    def run_input_thread(self) -> None:
        decode = getincrementaldecoder("utf-8")(errors="replace").decode
        parser = XTermParser(self._debug)
        with selectors.DefaultSelector() as selector:
            selector.register(self.fileno, selectors.EVENT_READ)
            while not self.exit_event.is_set():
                ready = selector.select(0.1)
                if ready:
                    data = self._read()
                    if data is None:
                        self._terminal_lost()
                        return
                    for event in parser.feed(decode(data)):
                        self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)

    def _read(self) -> bytes | None:
        """What stdin has, or None when the terminal is gone (end-of-file, EIO, EBADF)."""
        try:
            data = os.read(self.fileno, 4096)
        except InterruptedError:
            return b""
        except OSError as exc:
            if exc.errno in LOST:
                return None
            raise
        return data or None

    def _terminal_lost(self) -> None:
        app: Any = self._app
        app.terminal_lost = True
        self._loop.call_soon_threadsafe(app.exit)


def install_hangup_handler(app: Any) -> None:
    """SIGHUP (the terminal hung up) exits the console like ``q``; the runs keep going.

    A SIGHUP ignored by whoever started the console (``nohup``) stays ignored; the input loop still
    notices the terminal going away.
    """
    import asyncio

    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        return

    def hang_up() -> None:
        app.terminal_lost = True
        app.exit()

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hang_up)
    except (RuntimeError, NotImplementedError, ValueError):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # not the main thread / no loop: default hang-up ends us
