"""What a DPO run's metrics mean right now, in one line.

The monitor's health panel shows the most severe :class:`Finding` that :func:`assess` returns.
Rules are pure functions of a :class:`~dpo_tui.core.events.RunHistory` plus a little context
(state, batch size), so they are table-tested without a UI (``tests/unit/test_health.py``).

What the rules know about DPO metrics (the NaN case is in ``docs/design/trl-facts.md``, Metrics):

- Falling, negative ``rewards/chosen`` is normal DPO behaviour; what matters is the margin.
- Loss stuck at ln 2 = 0.693 after the first log means the policy never moves away from the
  reference: β = 0, ``chosen == rejected``, a learning rate of 0, or frozen weights.
- With one pair per step, ``rewards/accuracies`` can only be 0 or 1.
- A NaN model can log ``loss: 0.0`` with NaN rewards; the trainer's guard stops the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .events import FAILED, FINISHED, STOPPED, RunHistory

Level = Literal["ok", "info", "warn", "bad"]
LEVEL_ORDER: dict[str, int] = {"ok": 0, "info": 1, "warn": 2, "bad": 3}

LN2 = math.log(2.0)
# How many logs a trend or a plateau needs before a rule speaks.
MIN_TREND_POINTS = 6
PLATEAU_LOGS = 8
# Rules look at the newest logs only, so a 100,000-step history costs what a short one does.
TAIL = 200


@dataclass(frozen=True)
class Finding:
    """One thing the metrics say. ``code`` is stable (tests, docs); ``message`` is for people."""

    level: Level
    code: str
    message: str

    @property
    def rank(self) -> int:
        return LEVEL_ORDER[self.level]


@dataclass
class HealthContext:
    """What the rules need besides the metrics."""

    state: str | None = None
    """The run's reconciled state (``runs.RunStatus.state``), when known."""
    batch_size: int | None = None
    """Pairs per optimizer step on one process (per-device batch × accumulation)."""
    stalled_seconds: float | None = None
    """Seconds since the last heartbeat when the run looks stalled, else None."""
    resume_checkpoint: str | None = None
    """Name of the checkpoint a resume would continue from, when there is one."""
    extra: dict[str, Any] = field(default_factory=dict)


def _values(history: RunHistory, metric: str, tail: int = TAIL) -> list[float]:
    """The newest ``tail`` finite values of a metric, oldest first."""
    return [v for _, v in history.series.get(metric, [])[-tail:] if v is not None and math.isfinite(v)]


def slope(values: Sequence[float]) -> float:
    """Least-squares slope per log (0 for fewer than two points)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den if den else 0.0


def recent(values: Sequence[float], limit: int = 20) -> list[float]:
    """The newest half of the series, at most ``limit`` points and at least the minimum for a trend."""
    window = max(MIN_TREND_POINTS, min(limit, len(values) // 2))
    return list(values[-window:])


def _rising(values: Sequence[float]) -> bool | None:
    """True/False for a clear trend, None when there are too few points or it is flat."""
    if len(values) < MIN_TREND_POINTS:
        return None
    window = recent(values)
    spread = max(window) - min(window)
    s = slope(window)
    # A trend must move the series by a noticeable part of its own spread over the window.
    if spread == 0 or abs(s) * len(window) < 0.25 * spread:
        return None
    return s > 0


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    """A reward accuracy as a share of pairs: ``100 %``, not ``1.`` at the end of a sentence."""
    return "–" if value is None else f"{100 * value:.0f} %"


# --- rules ---------------------------------------------------------------------------------
# Each rule returns a Finding or None. They are listed below in no particular order; assess()
# sorts by severity, so the worst news wins the one line of the panel.


def rule_terminal(h: RunHistory, ctx: HealthContext) -> Finding | None:
    term = h.terminal
    if ctx.state == "crashed" and (term is None or term.get("type") not in (FINISHED, STOPPED, FAILED)):
        resume = f"; resume continues from {ctx.resume_checkpoint}" if ctx.resume_checkpoint else ""
        return Finding("bad", "crashed", f"Crashed at step {h.step}: the trainer vanished without a final event{resume}.")
    if term is None:
        return None
    kind = term.get("type")
    if kind == FINISHED:
        margin, acc = h.latest("rewards/margins"), h.latest("rewards/accuracies")
        return Finding("ok", "finished", f"Finished at step {h.step}: margin {_fmt(margin)}, accuracy {_pct(acc)}.")
    if kind == STOPPED:
        hint = term.get("hint") or (f"resume continues from {ctx.resume_checkpoint}" if ctx.resume_checkpoint else "")
        return Finding("info", "stopped", f"Stopped at step {term.get('step', h.step)}" + (f"; {hint}." if hint else "."))
    if kind == FAILED:
        fkind = term.get("kind") or "crash"
        if fkind == "nan":
            return Finding(
                "bad",
                "failed-nan",
                f"NaN/Inf in the metrics stopped the run at step {term.get('step', h.step)}; the last good checkpoint "
                "is kept. Lower the learning rate, or use bf16 instead of fp16.",
            )
        message = term.get("message") or "the trainer failed"
        hint = term.get("hint")
        return Finding("bad", f"failed-{fkind}", f"Failed ({fkind}): {message}" + (f" — {hint}" if hint else ""))
    return None


def rule_nonfinite(h: RunHistory, ctx: HealthContext) -> Finding | None:
    if h.terminal is not None or h.last_log is None:
        return None
    bad = h.last_log.get("nonfinite") or []
    if not bad:
        return None
    return Finding("bad", "nonfinite", f"NaN/Inf in {', '.join(bad[:3])} at step {h.step}: the NaN guard will stop the run.")


def rule_waiting(h: RunHistory, ctx: HealthContext) -> Finding | None:
    if h.last_log is not None or h.terminal is not None or ctx.state in ("crashed", "stopped", "failed", "finished"):
        return None
    if h.started is None:
        return Finding("info", "waiting-start", "Waiting for the trainer to start (loading the model and tokenizing the data)…")
    return Finding("info", "waiting-log", "Training started; waiting for the first logged step…")


def rule_stalled(h: RunHistory, ctx: HealthContext) -> Finding | None:
    if ctx.stalled_seconds is None or h.terminal is not None:
        return None
    return Finding("warn", "stalled", f"No heartbeat for {ctx.stalled_seconds:.0f} s: the trainer may be hung (check the log tail).")


def rule_loss_plateau(h: RunHistory, ctx: HealthContext) -> Finding | None:
    loss = h.series.get("loss", [])[-TAIL:]
    points = [(s, v) for s, v in loss if v is not None]
    if not points:
        return None
    if len(points) == 1 or points[-1][0] <= 1:
        if abs(points[-1][1] - LN2) < 0.01:
            return Finding("info", "ln2-start", "Loss 0.693 = ln 2 at the start is normal: the policy still equals the reference.")
        return None
    tail = [v for s, v in points[-PLATEAU_LOGS:] if s > 1]
    margins = _values(h, "rewards/margins")[-PLATEAU_LOGS:]
    if len(tail) >= PLATEAU_LOGS and all(abs(v - LN2) < 0.002 for v in tail) and all(abs(m) < 1e-3 for m in margins):
        return Finding(
            "warn",
            "ln2-stuck",
            "Loss stuck at 0.693 (ln 2) with zero margins: nothing is learning. Check β > 0, chosen ≠ rejected, "
            "and the learning rate.",
        )
    return None


def rule_margins(h: RunHistory, ctx: HealthContext) -> Finding | None:
    margins = _values(h, "rewards/margins")
    trend = _rising(margins)
    if trend is None:
        return None
    if trend is False:
        return Finding(
            "warn",
            "margins-falling",
            f"Reward margins are falling (now {_fmt(margins[-1])}): the policy is drifting towards the rejected "
            "answers. Check that chosen and rejected are not swapped; try a lower learning rate.",
        )
    chosen, rejected = _values(h, "rewards/chosen"), _values(h, "rewards/rejected")
    if _rising(chosen) is False and _rising(rejected) is False:
        return Finding(
            "ok",
            "margins-up-both-down",
            f"Margins rising ({_fmt(margins[-1])}) while both rewards fall: normal for DPO, rejected falls faster.",
        )
    acc = h.latest("rewards/accuracies")
    return Finding("ok", "learning", f"Learning: margin {_fmt(margins[-1])} and rising, accuracy {_pct(acc)}.")


# --- over-fitting -----------------------------------------------------------------------------
# Four signals, each a pure function of plain series so it is tested on synthetic curves. Why each
# threshold is what it is: docs/design/overfitting.md.

# Per-pair DPO loss is -log σ(margin): below 0.01 the pairs are separated with σ > 0.99 (margin ≳ 4.6).
SATURATED_LOSS = 0.01
# Past this margin (σ(3) ≈ 0.95) the loss has little left to gain; growth from here is memorisation.
SEPARATED_MARGIN = 3.0
# The newest margin steps must grow at least this many times faster than the steps before them.
ACCELERATION = 2.0
# Eval loss this far above its best, rising, while train loss falls: the textbook over-fit.
EVAL_RISE = 0.05


def saturated(losses: Sequence[float], accuracies: Sequence[float]) -> bool:
    """The last two logged losses are below :data:`SATURATED_LOSS` and accuracy (when logged) is 100 %."""
    if len(losses) < 2 or max(losses[-2:]) >= SATURATED_LOSS:
        return False
    return not accuracies or accuracies[-1] >= 1.0


def margin_acceleration(margins: Sequence[float]) -> float | None:
    """How many times faster the margin grew over its last two logs than over the logs before them
    (None when there are too few logs or the earlier growth was not positive)."""
    if len(margins) < MIN_TREND_POINTS:
        return None
    late = slope(margins[-3:])
    early = slope(recent(margins[:-2], limit=12))
    if early <= 0:
        return None
    return late / early


def margin_accelerating(margins: Sequence[float]) -> bool:
    """The margin is already past :data:`SEPARATED_MARGIN` and its growth speeds up."""
    ratio = margin_acceleration(margins)
    return ratio is not None and ratio >= ACCELERATION and margins[-1] > SEPARATED_MARGIN


def chosen_displaced(chosen: Sequence[float], margins: Sequence[float]) -> bool:
    """The chosen reward ended below where it started and keeps falling while the margin, already past
    :data:`SEPARATED_MARGIN`, still grows: the policy buys margin by making the preferred answers less likely."""
    if len(chosen) < MIN_TREND_POINTS or len(margins) < MIN_TREND_POINTS:
        return False
    return (
        chosen[-1] < min(0.0, chosen[0])
        and slope(recent(chosen)) < 0
        and _rising(margins) is True
        and margins[-1] > SEPARATED_MARGIN
    )


def eval_diverging(train_losses: Sequence[tuple[int, float]], eval_losses: Sequence[tuple[int, float]]) -> bool:
    """Eval loss rose at its last two evaluations, ends :data:`EVAL_RISE` above its best, and train loss
    fell over the same steps. Both series are ``(step, value)``."""
    if len(eval_losses) < 3:
        return False
    values = [v for _, v in eval_losses]
    best = min(values[:-1])
    if not (values[-1] > values[-2] > values[-3] and values[-1] > best * (1 + EVAL_RISE)):
        return False
    since = eval_losses[-3][0]
    train = [v for s, v in train_losses if s >= since]
    return len(train) >= 2 and slope(train) < 0


def _points(h: RunHistory, metric: str) -> list[tuple[int, float]]:
    return [(s, v) for s, v in h.series.get(metric, [])[-TAIL:] if v is not None and math.isfinite(v)]


def eval_points(h: RunHistory, metric: str) -> list[tuple[int, float]]:
    """An eval-split metric (``loss``, ``rewards/margins``…) as ``(step, value)``: from the eval events,
    else from the ``eval_``-prefixed keys of logged steps."""
    name = f"eval_{metric}"
    raw = h.eval_series.get(name) or h.series.get(name) or []
    return [(s, v) for s, v in raw[-TAIL:] if v is not None and math.isfinite(v)]


def overfit_signals(h: RunHistory) -> list[str]:
    """Which over-fitting signals the history shows, as short phrases for the health line."""
    losses, margins = _values(h, "loss"), _values(h, "rewards/margins")
    found: list[str] = []
    if eval_diverging(_points(h, "loss"), eval_points(h, "loss")):
        found.append("eval loss rising while train loss falls")
    if saturated(losses, _values(h, "rewards/accuracies")):
        found.append(f"loss {_fmt(losses[-1], 2)} with accuracy 100 %")
    if margin_accelerating(margins):
        found.append(f"margin jumping ({' → '.join(_fmt(m, 2) for m in margins[-3:])})")
    chosen = _values(h, "rewards/chosen")
    if chosen_displaced(chosen, margins):
        found.append(f"chosen reward falling ({_fmt(chosen[-1], 2)})")
    return found


def rule_overfit(h: RunHistory, ctx: HealthContext) -> Finding | None:
    found = overfit_signals(h)
    if not found:
        return None
    return Finding(
        "warn",
        "overfitting",
        f"Over-fitting at step {h.step}: {'; '.join(found)}. Later checkpoints may answer in gibberish: chat with an "
        "earlier one, or use a larger β, a lower learning rate, fewer steps or more data.",
    )


def rule_batch_one_accuracy(h: RunHistory, ctx: HealthContext) -> Finding | None:
    acc = _values(h, "rewards/accuracies", tail=50)
    if not acc:
        return None
    binary = all(a in (0.0, 1.0) for a in acc)
    if (ctx.batch_size == 1 or (ctx.batch_size is None and len(acc) >= MIN_TREND_POINTS and binary)) and binary:
        return Finding("info", "accuracy-binary", "Accuracy is only ever 0 or 1 with one pair per step: watch the margin trend instead.")
    return None


def rule_grad_norm(h: RunHistory, ctx: HealthContext) -> Finding | None:
    norms = _values(h, "grad_norm")
    if len(norms) < MIN_TREND_POINTS:
        return None
    history, last = norms[:-1], norms[-1]
    typical = sorted(history)[len(history) // 2]
    if typical > 0 and last > 20 * typical and last > 10:
        return Finding("warn", "grad-spike", f"Gradient norm spiked to {_fmt(last)} (typical {_fmt(typical)}): lower the learning rate if it repeats.")
    return None


def rule_warning_event(h: RunHistory, ctx: HealthContext) -> Finding | None:
    if not h.warnings:
        return None
    message = str(h.warnings[-1].get("message") or "").strip().splitlines()
    return Finding("info", "trainer-warning", f"Trainer warning: {message[0] if message else '(no text)'}")


RULES: tuple[Callable[[RunHistory, HealthContext], Finding | None], ...] = (
    rule_terminal,
    rule_nonfinite,
    rule_stalled,
    rule_waiting,
    rule_loss_plateau,
    rule_overfit,
    rule_margins,
    rule_grad_norm,
    rule_batch_one_accuracy,
    rule_warning_event,
)


def assess(history: RunHistory, ctx: HealthContext | None = None) -> list[Finding]:
    """Every finding, most severe first (ties keep rule order). Never raises on odd data."""
    ctx = ctx or HealthContext()
    findings: list[Finding] = []
    for rule in RULES:
        try:
            found = rule(history, ctx)
        except (TypeError, ValueError, KeyError, ZeroDivisionError):
            found = None
        if found is not None:
            findings.append(found)
    # Terminal outcomes always lead: "how it ended" beats "what the last trend was".
    terminal_codes = {"finished", "stopped", "crashed"}
    findings.sort(key=lambda f: (f.code not in terminal_codes and not f.code.startswith("failed"), -f.rank))
    return findings


def headline(history: RunHistory, ctx: HealthContext | None = None) -> Finding:
    """The one line the health panel shows."""
    findings = assess(history, ctx)
    if findings:
        return findings[0]
    if history.last_log is not None:
        return Finding("ok", "early", f"Step {history.step}: too early for a trend; margins should start to rise.")
    return Finding("info", "no-data", "No events yet.")
