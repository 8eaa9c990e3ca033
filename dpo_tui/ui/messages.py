"""How background work reports to the UI: the message convention, its helpers, and the app-wide messages.

The console reads files, queries GPUs and talks to child processes in thread workers
(``@work(thread=True)``); only the UI thread may touch widgets. Results therefore cross threads as
Textual messages, and every such message follows three rules:

1. **A documented dataclass.** It is a ``@dataclass`` subclass of :class:`~textual.message.Message`
   whose docstring says who posts it and when. Messages used by a single screen live inside that
   screen's class; messages several screens or the app handle live here. A worker posts with
   ``self.post_message(...)`` (thread-safe), never with ``call_from_thread`` for a result.
2. **Snapshots may be superseded.** A message that carries a whole new state, replacing the
   previous one (a runs listing, a GPU inventory, a status read), subclasses :class:`Snapshot`:
   when a newer message of the same type is already queued behind it, Textual drops the older one
   unhandled (``Message.can_replace``). Messages that carry a change or an event (a notice, a
   launched run, a chunk of chat tokens) must not be dropped and are plain messages.
3. **Stale results are dropped by one helper.** When a newer request can outrun an older one (the
   operator picks another file while the previous one is still loading), the requester holds a
   :class:`Latest`, takes a ticket on the UI thread before starting the worker
   (``ticket = self._loads.issue()``), the worker puts the ticket in its result message, and the
   handler starts with ``if not self._loads.is_latest(message.ticket): return`` — or
   ``accept(ticket)`` where any result newer than the one on screen is still worth showing (a
   periodic refresh whose requests may overlap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from textual.message import Message

if TYPE_CHECKING:
    from ..core.gpus import GpuInventory
    from ..core.settings import Settings
    from .notify import RunState

Severity = Literal["information", "warning", "error"]
"""A notification's severity, as ``App.notify`` takes it."""


class Snapshot(Message):
    """A message whose payload replaces the previous state whole: a newer one of its type supersedes it."""

    def can_replace(self, message: Message) -> bool:
        # Textual asks the message at the head of the queue whether the next one may take its
        # place; only the same type carries the same kind of state.
        return type(message) is type(self)


class Latest:
    """Tickets for background requests, so that a result that lost the race is dropped.

    Used on the UI thread only (issue before starting the worker, check in the handler), so it
    needs no lock. Ticket 0 is never issued: a message may use it for "not asked for by a request"
    (a periodic tick), which :meth:`accept` always takes.
    """

    __slots__ = ("_accepted", "_issued")

    def __init__(self) -> None:
        self._issued = 0
        self._accepted = 0

    def issue(self) -> int:
        """A new ticket; every result of an earlier ticket becomes stale for :meth:`is_latest`."""
        self._issued += 1
        return self._issued

    def is_latest(self, ticket: int) -> bool:
        """True when ``ticket`` belongs to the newest request."""
        return ticket == self._issued

    def invalidate(self) -> None:
        """Make every ticket issued so far stale, for :meth:`accept` too (the subject changed: results
        about the previous one must never show)."""
        self._issued += 1
        self._accepted = self._issued

    def accept(self, ticket: int) -> bool:
        """True (and remembered) unless a result of a newer request was already accepted."""
        if ticket and ticket < self._accepted:
            return False
        self._accepted = max(self._accepted, ticket)
        return True


@dataclass
class GpuInventoryChanged(Snapshot):
    """The app's GPU query finished: the whole ``core.gpus.GpuInventory`` (None without a driver).

    Posted by the app's ``gpus`` thread worker at start-up and on each inventory refresh.
    """

    inventory: GpuInventory | None


@dataclass
class RunStatesRead(Snapshot):
    """The run watcher's read of the runs root: every run's state and the stat cache it used.

    Posted by the app's ``run-watch`` thread worker on each watch tick; ``states`` is None when
    the read failed (the next tick tries again).
    """

    states: dict[str, RunState] | None
    cache: dict[str, tuple[tuple[int, int], RunState]]


@dataclass
class SettingsLoaded(Snapshot):
    """The operator's settings file was read (a ``core.settings.Settings``).

    Posted by the app's ``settings`` thread worker at start-up; an unreadable file posts a
    :class:`Notice` instead and the defaults stay.
    """

    settings: Settings | None


@dataclass
class RunLaunched(Message):
    """A launch finished: the run was created and its supervisor started (``run_id`` is ``""`` when it failed).

    Posted by the experiment screen's launch thread worker once per launch; a failure also posts a
    :class:`Notice` with the reason.
    """

    run_id: str


@dataclass
class Notice(Message):
    """Something an operator should read; the app shows it as a notification.

    Posted by any thread worker whose outcome the operator must hear about (stop, resume, delete,
    a file that cannot be read). ``text`` is already fit for an operator: a UserError's rendering,
    never a traceback.
    """

    title: str
    text: str
    severity: Severity = "information"
