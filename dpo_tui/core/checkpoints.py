"""Which of a run's saved weights is best: the lowest eval loss, else the lowest train loss.

:func:`pick_best` is pure (steps, series, what is on disk); :func:`best_checkpoint` reads a run folder
and calls it. The chat sides picker's default and ``dpo-tui export --checkpoint best`` both use it, so
"best" means the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINAL = "final adapter"


@dataclass(frozen=True)
class Candidate:
    """Weights on disk: a complete checkpoint or the final adapter, and the step they were saved at."""

    name: str
    """``checkpoint-N`` or :data:`FINAL`."""
    step: int
    path: Path


@dataclass(frozen=True)
class Best:
    candidate: Candidate
    metric: str
    """``eval_loss`` or ``loss``."""
    value: float | None
    note: str
    """One line for people: what was compared, and the fallback when there is no eval split."""

    @property
    def is_final(self) -> bool:
        return self.candidate.name == FINAL

    @property
    def checkpoint_step(self) -> int | None:
        """The step to pass as ``checkpoint=`` (None for the final adapter)."""
        return None if self.is_final else self.candidate.step


def value_at(points: Sequence[tuple[int, float | None]], step: int) -> float | None:
    """The newest finite value logged at or before ``step`` (None before the first one)."""
    found = None
    for s, v in points:
        if s > step:
            break
        if v is not None and math.isfinite(v):
            found = v
    return found


def pick_best(
    candidates: Sequence[Candidate],
    eval_loss: Sequence[tuple[int, float | None]],
    train_loss: Sequence[tuple[int, float | None]],
) -> Best | None:
    """The candidate with the lowest eval loss measured at (or just before) its step; without eval
    points, the lowest train loss, with a note saying so. Ties go to the earlier step (less drift from
    the reference for the same loss); the final adapter wins a tie with a checkpoint of its own step."""
    if not candidates:
        return None
    order = sorted(candidates, key=lambda c: (c.step, c.name != FINAL))
    evals = sorted(eval_loss)
    if any(v is not None for _, v in evals):
        metric, points, why = "eval_loss", evals, "lowest eval loss"
    else:
        metric, points, why = "loss", sorted(train_loss), "lowest train loss (no eval split; set eval_fraction > 0 to pick by held-out pairs)"
    scored = [(value_at(points, c.step), c) for c in order]
    known = [(v, c) for v, c in scored if v is not None]
    if not known:
        newest = max(order, key=lambda c: (c.step, c.name == FINAL))
        return Best(newest, metric, None, f"{newest.name}: no {metric} logged yet, so the newest weights")
    value, best = min(known, key=lambda vc: vc[0])
    return Best(best, metric, value, f"{best.name}: {why}, {value:.4g} at step {best.step}")


def best_checkpoint(run: Any, history: Any | None = None) -> Best | None:
    """The best saved weights of a run (None when it saved none). Pass the run's folded
    :class:`~dpo_tui.core.events.RunHistory` when the caller already has it."""
    from . import events as ev

    if history is None:
        history = ev.RunHistory()
        history.apply(ev.read_events(run.events_path))
    out = [Candidate(f"checkpoint-{c.step}", c.step, c.path) for c in run.checkpoints() if c.complete]
    final = run.final_weights_dir()
    if final is not None:
        out.append(Candidate(FINAL, max([history.step, *(c.step for c in out)]), final))
    eval_loss = history.eval_series.get("eval_loss") or history.series.get("eval_loss") or []
    return pick_best(out, eval_loss, history.series.get("loss", []))
