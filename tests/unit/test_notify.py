"""Run-outcome notifications, the pure part (dpo_tui/ui/notify.py): transitions and the OSC 9 escape."""

from __future__ import annotations

import pytest

from dpo_tui.ui.notify import RunState, Transition, osc9, transitions


def states(**kw: str) -> dict[str, RunState]:
    return {k: RunState(v) for k, v in kw.items()}


@pytest.mark.parametrize("before", ["queued", "starting", "running", "stopping"])
@pytest.mark.parametrize("after", ["finished", "failed", "stopped", "crashed"])
def test_active_to_terminal_is_a_transition(before: str, after: str) -> None:
    found = transitions(states(a=before), states(a=after))
    assert [(t.run_id, t.before, t.after.state) for t in found] == [("a", before, after)]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("finished", "finished"),  # already over when the console opened
        ("failed", "failed"),
        ("running", "running"),
        ("queued", "running"),
        ("stopped", "queued"),  # resumed: not an ending
        ("unreadable", "finished"),  # unknown before: no claim it just ended
    ],
)
def test_other_changes_are_quiet(before: str, after: str) -> None:
    assert transitions(states(a=before), states(a=after)) == []


def test_runs_first_seen_terminal_are_quiet_and_order_follows_the_new_snapshot() -> None:
    before = states(a="running", b="running", c="finished")
    after = states(new="failed", b="stopped", a="finished", c="finished")
    assert [t.run_id for t in transitions(before, after)] == ["b", "a"]
    assert transitions({}, after) == []


def test_deleted_runs_are_quiet() -> None:
    assert transitions(states(a="running"), {}) == []


def test_text_and_severity() -> None:
    failed = Transition("r1", "running", RunState("failed", "oom", "CUDA out of memory"))
    assert failed.text() == "r1 failed (oom): CUDA out of memory"
    assert failed.severity == "error" and failed.title() == "Run failed"
    done = Transition("r2", "running", RunState("finished", None, None))
    assert done.text() == "r2 finished" and done.severity == "information"
    stopped = Transition("r3", "stopping", RunState("stopped", "cancelled", "cancelled while queued"))
    assert stopped.text() == "r3 stopped (cancelled)" and stopped.severity == "warning"
    assert Transition("r4", "running", RunState("crashed", "crash", "gone")).severity == "error"


def test_osc9_plain() -> None:
    assert osc9("dpo-tui: run r1 finished") == "\x1b]9;dpo-tui: run r1 finished\x07"


def test_osc9_inside_tmux_uses_passthrough_with_doubled_escapes() -> None:
    wrapped = osc9("done", tmux=True)
    assert wrapped == "\x1bPtmux;\x1b\x1b]9;done\x07\x1b\\"
    inner = wrapped.removeprefix("\x1bPtmux;").removesuffix("\x1b\\")
    assert inner.replace("\x1b\x1b", "\x1b") == osc9("done")


@pytest.mark.parametrize("evil", ["a\x07b", "a\x1b]9;x\x07", "line\nbreak", "tab\there", "nul\x00"])
def test_osc9_never_lets_a_message_end_or_start_an_escape(evil: str) -> None:
    for tmux in (False, True):
        out = osc9(evil, tmux=tmux)
        body = out.removeprefix("\x1bPtmux;").removeprefix("\x1b\x1b]9;").removeprefix("\x1b]9;")
        body = body.removesuffix("\x1b\\").removesuffix("\x07")
        assert not any(ord(ch) < 32 or ch == "\x7f" for ch in body), repr(out)
