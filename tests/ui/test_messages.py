"""The UI message convention's helpers: stale results are dropped, snapshots supersede their own type only."""

from __future__ import annotations

from dpo_tui.ui.messages import GpuInventoryChanged, Latest, Notice, RunStatesRead, SettingsLoaded


def test_only_the_newest_ticket_is_latest() -> None:
    latest = Latest()
    first = latest.issue()
    second = latest.issue()
    assert not latest.is_latest(first)
    assert latest.is_latest(second)


def test_accept_drops_results_older_than_the_one_shown() -> None:
    latest = Latest()
    first, second, third = latest.issue(), latest.issue(), latest.issue()
    assert latest.accept(second)
    assert not latest.accept(first)  # finished after a newer result was shown
    assert latest.accept(third)
    assert latest.accept(0)  # unsolicited (a periodic tick) is always taken


def test_a_snapshot_is_superseded_by_its_own_type_only() -> None:
    old, new = GpuInventoryChanged(None), GpuInventoryChanged(None)
    assert old.can_replace(new)
    assert not old.can_replace(RunStatesRead(None, {}))
    assert not SettingsLoaded(None).can_replace(old)


def test_events_are_never_superseded() -> None:
    assert not Notice("a", "b").can_replace(Notice("a", "c"))


def test_invalidate_makes_every_issued_ticket_stale() -> None:
    latest = Latest()
    old = latest.issue()
    latest.invalidate()
    assert not latest.is_latest(old)
    assert not latest.accept(old)  # a result about the previous subject never shows
    new = latest.issue()
    assert latest.is_latest(new) and latest.accept(new)
