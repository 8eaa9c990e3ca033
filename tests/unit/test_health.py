"""Health rules: each scenario is a list of events and the headline the monitor must show."""

from __future__ import annotations

import math

import pytest

from dpo_tui.core.events import RunHistory
from dpo_tui.core.health import (
    LN2,
    HealthContext,
    assess,
    chosen_displaced,
    eval_diverging,
    headline,
    margin_accelerating,
    margin_acceleration,
    overfit_signals,
    saturated,
    slope,
)
from tests.support.uikit import learning_events


def log(step: int, **metrics: float | None) -> dict:
    names = {
        "margin": "rewards/margins",
        "acc": "rewards/accuracies",
        "chosen": "rewards/chosen",
        "rejected": "rewards/rejected",
    }
    m = {names.get(k, k): v for k, v in metrics.items()}
    nonfinite = [k for k, v in m.items() if v is None]
    return {"type": "log", "step": step, "t": 1000.0 + step, "metrics": m, "nonfinite": nonfinite}


def learning(n: int = 20, chosen_falls: bool = True, batch: int = 4) -> list[dict]:
    events = [{"type": "started", "t": 1000.0, "max_steps": 100}]
    for s in range(1, n + 1):
        margin = 0.05 * s
        chosen = -0.02 * s if chosen_falls else 0.03 * s
        events.append(log(s, loss=LN2 - 0.01 * s, margin=margin, chosen=chosen, rejected=chosen - margin, acc=0.5 + 0.02 * s))
    return events


def history(events: list[dict]) -> RunHistory:
    h = RunHistory()
    h.apply(events)
    return h


CASES = [
    # (name, events, context, expected headline code, expected level)
    ("empty", [], HealthContext(state="queued"), "waiting-start", "info"),
    ("started-no-log", [{"type": "started", "t": 1.0}], HealthContext(state="running"), "waiting-log", "info"),
    ("first-log-ln2", [{"type": "started"}, log(1, loss=LN2, margin=0.0, acc=0.0)], HealthContext(), "ln2-start", "info"),
    (
        "stuck-at-ln2",
        [{"type": "started"}] + [log(s, loss=LN2, margin=0.0, acc=0.0, chosen=0.0, rejected=0.0) for s in range(1, 12)],
        HealthContext(state="running"),
        "ln2-stuck",
        "warn",
    ),
    ("both-rewards-fall", learning(20, chosen_falls=True), HealthContext(state="running"), "margins-up-both-down", "ok"),
    ("learning", learning(20, chosen_falls=False), HealthContext(state="running"), "learning", "ok"),
    (
        "margins-falling",
        [{"type": "started"}] + [log(s, loss=LN2 + 0.01 * s, margin=-0.05 * s, acc=0.4) for s in range(1, 15)],
        HealthContext(state="running"),
        "margins-falling",
        "warn",
    ),
    (
        "nan-in-log",
        learning(8) + [log(9, loss=0.0, margin=None, chosen=None)],
        HealthContext(state="running"),
        "nonfinite",
        "bad",
    ),
    (
        "nan-failed",
        learning(8) + [{"type": "failed", "kind": "nan", "step": 9, "message": "NaN", "hint": "lower lr"}],
        HealthContext(state="failed"),
        "failed-nan",
        "bad",
    ),
    (
        "oom-failed",
        learning(3) + [{"type": "failed", "kind": "oom", "message": "CUDA out of memory", "hint": "halve the batch"}],
        HealthContext(state="failed"),
        "failed-oom",
        "bad",
    ),
    ("finished", learning(20) + [{"type": "finished"}], HealthContext(state="finished"), "finished", "ok"),
    (
        "stopped",
        learning(5) + [{"type": "stopped", "step": 5}],
        HealthContext(state="stopped", resume_checkpoint="checkpoint-5"),
        "stopped",
        "info",
    ),
    ("crashed", learning(5), HealthContext(state="crashed", resume_checkpoint="checkpoint-4"), "crashed", "bad"),
    ("stalled", learning(5), HealthContext(state="running", stalled_seconds=240), "stalled", "warn"),
    (
        "batch-one-accuracy",
        [{"type": "started"}] + [log(s, loss=0.69, margin=0.001 * (s % 2), acc=float(s % 2)) for s in range(1, 5)],
        HealthContext(state="running", batch_size=1),
        "accuracy-binary",
        "info",
    ),
    (
        "saturated",
        [{"type": "started"}] + [log(s, loss=0.001, margin=12.0 + s, acc=1.0) for s in range(1, 10)],
        HealthContext(state="running"),
        "overfitting",
        "warn",
    ),
    (
        "grad-spike",
        [{"type": "started"}] + [log(s, loss=0.69, grad_norm=1.0 + 0.01 * s) for s in range(1, 10)] + [log(10, loss=0.69, grad_norm=80.0)],
        HealthContext(state="running"),
        "grad-spike",
        "warn",
    ),
    (
        "trainer-warning",
        [{"type": "started"}, log(1, loss=0.68), {"type": "warning", "message": "12 rows dropped\nmore"}],
        HealthContext(state="running"),
        "trainer-warning",
        "info",
    ),
    ("early", [{"type": "started"}, log(1, loss=0.68), log(2, loss=0.67)], HealthContext(state="running"), "early", "ok"),
]


@pytest.mark.parametrize(("name", "events", "ctx", "code", "level"), CASES, ids=[c[0] for c in CASES])
def test_headline(name: str, events: list[dict], ctx: HealthContext, code: str, level: str) -> None:
    found = headline(history(events), ctx)
    assert (found.code, found.level) == (code, level), found.message
    assert found.message and "\n" not in found.message


def test_terminal_outcome_beats_trend_warnings() -> None:
    events = [{"type": "started"}] + [log(s, loss=LN2 + 0.01 * s, margin=-0.05 * s) for s in range(1, 15)]
    events.append({"type": "finished"})
    findings = assess(history(events), HealthContext(state="finished"))
    assert findings[0].code == "finished"
    assert "margins-falling" in [f.code for f in findings]


def test_stopped_message_names_checkpoint() -> None:
    found = headline(history(learning(5) + [{"type": "stopped", "step": 5}]), HealthContext(resume_checkpoint="checkpoint-5"))
    assert "checkpoint-5" in found.message


def test_failed_message_carries_hint() -> None:
    events = [{"type": "started"}, {"type": "failed", "kind": "data", "message": "no usable rows", "hint": "run dpo-tui data"}]
    found = headline(history(events), HealthContext(state="failed"))
    assert found.code == "failed-data" and "no usable rows" in found.message and "dpo-tui data" in found.message


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], 0.0), ([1.0], 0.0), ([1.0, 2.0, 3.0], 1.0), ([3.0, 2.0, 1.0], -1.0), ([2.0, 2.0, 2.0], 0.0)],
)
def test_slope(values: list[float], expected: float) -> None:
    assert math.isclose(slope(values), expected, abs_tol=1e-12)


def test_odd_events_never_raise() -> None:
    weird = [{"type": "log", "step": "x"}, {"type": "log", "step": 3, "metrics": {"loss": "nan?"}}, {"type": "failed"}]
    found = headline(history(weird), HealthContext())
    assert found.level == "bad"


# --- over-fitting ----------------------------------------------------------------------------


def overfit_trace() -> list[dict]:
    """The reported run: margin climbing steadily to 4.6, then 5.6 and 8.2; loss 0.0007 at step 51 with
    accuracy 100 %; the chosen reward sliding to -0.83. Chatting with its checkpoint gave gibberish."""
    events: list[dict] = [{"type": "started", "t": 1000.0, "max_steps": 60}]
    for s in range(1, 52):
        if s <= 49:
            margin = 4.6 * s / 49
            loss = math.log1p(math.exp(-margin))
            acc = min(1.0, 0.5 + s / 40)
        else:
            margin, loss, acc = {50: (5.6, 0.0037, 1.0), 51: (8.2, 0.0007, 1.0)}[s]
        chosen = -0.83 * s / 51
        events.append(log(s, loss=loss, margin=margin, chosen=chosen, rejected=chosen - margin, acc=acc))
    return events


def test_reported_overfit_trace_warns() -> None:
    found = headline(history(overfit_trace()), HealthContext(state="running", batch_size=4))
    assert (found.code, found.level) == ("overfitting", "warn"), found.message
    assert "step 51" in found.message and "Normal" not in found.message
    signals = overfit_signals(history(overfit_trace()))
    assert len(signals) == 3, signals  # saturation, acceleration, chosen displacement (no eval split)


@pytest.mark.parametrize("steps", [10, 18, 30])
def test_healthy_sample_run_does_not_warn(steps: int) -> None:
    events = [{k: v for k, v in e.items() if k not in ("v", "seq")} for e in learning_events(steps)]
    findings = assess(history(events), HealthContext(state="running", batch_size=4))
    assert all(f.level in ("ok", "info") for f in findings), findings
    assert overfit_signals(history(events)) == []


@pytest.mark.parametrize(
    ("losses", "accs", "expected"),
    [
        ([0.5, 0.2, 0.004, 0.0007], [0.9, 1.0, 1.0, 1.0], True),
        ([0.5, 0.2, 0.004, 0.0007], [], True),  # accuracy not logged: loss alone decides
        ([0.5, 0.2, 0.02, 0.0007], [1.0], False),  # one tiny log is noise
        ([0.004, 0.0007], [0.75], False),  # not every pair separated
        ([0.0007], [1.0], False),
    ],
)
def test_saturated(losses: list[float], accs: list[float], expected: bool) -> None:
    assert saturated(losses, accs) is expected


def test_margin_acceleration() -> None:
    steady = [0.1 * i for i in range(1, 40)]
    assert math.isclose(margin_acceleration(steady) or 0, 1.0, rel_tol=1e-9)
    assert not margin_accelerating(steady)
    jump = [*(4.6 * i / 10 for i in range(1, 11)), 5.6, 8.2]
    assert (margin_acceleration(jump) or 0) > 2 and margin_accelerating(jump)
    small = [0.01 * i for i in range(1, 10)] + [0.2, 0.5]  # accelerating, but nowhere near separated
    assert not margin_accelerating(small)
    assert margin_acceleration([1.0, 2.0]) is None
    assert margin_acceleration([3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0]) is None  # it had been falling


def test_chosen_displaced() -> None:
    margins = [0.5 * i for i in range(1, 13)]
    falling = [-0.07 * i for i in range(1, 13)]
    assert chosen_displaced(falling, margins)
    assert not chosen_displaced([0.05 * i for i in range(1, 13)], margins)  # chosen rising
    assert not chosen_displaced(falling, [0.1 * i for i in range(1, 13)])  # margin still small
    assert not chosen_displaced(falling[:3], margins[:3])


def test_eval_diverging() -> None:
    train = [(s, 0.69 - 0.01 * s) for s in range(1, 61)]
    assert eval_diverging(train, [(10, 0.60), (20, 0.55), (30, 0.58), (40, 0.63)])
    assert not eval_diverging(train, [(10, 0.60), (20, 0.55), (30, 0.54), (40, 0.53)])  # still improving
    assert not eval_diverging(train, [(10, 0.60), (20, 0.55), (30, 0.555), (40, 0.56)])  # within noise
    assert not eval_diverging(train, [(20, 0.55), (40, 0.63)])  # two evaluations say nothing yet
    flat_train = [(s, 0.3) for s in range(1, 61)]
    assert not eval_diverging(flat_train, [(10, 0.60), (20, 0.55), (30, 0.58), (40, 0.63)])


def test_eval_split_divergence_warns_from_eval_events() -> None:
    events = learning(40, chosen_falls=False)
    for step, value in [(10, 0.62), (20, 0.58), (30, 0.61), (40, 0.66)]:
        events.append({"type": "eval", "step": step, "metrics": {"eval_loss": value}})
    found = headline(history(events), HealthContext(state="running"))
    assert (found.code, found.level) == ("overfitting", "warn")
    assert "eval loss rising" in found.message
