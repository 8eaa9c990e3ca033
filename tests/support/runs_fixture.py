"""Fixture runs for the runs/compare tests: a β ladder (finished, running, queued), a plain finished run,
a failed run and an unreadable (half-deleted) folder. Fixed timestamps; no clock, no host."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.uikit import T0, learning_events

GROUP = "ladder-20251126"
LADDER = ("20251126-212000-tiny-chat-b0.05", "20251126-212001-tiny-chat-b0.1", "20251126-212002-tiny-chat-b0.5")
FINISHED = "20251126-211000-tiny-chat-b0.1"
FAILED = "20251126-210000-tiny-chat-b0.5-oom"
BROKEN = "20251126-213000-half-deleted"


def beta_events(steps: int, beta: float, max_steps: int = 30, t0: float = T0) -> list[dict[str, Any]]:
    """learning_events with curves that depend on β (larger β: faster-growing margins, lower loss)."""
    k = 0.6 + 4 * beta
    events = learning_events(steps, max_steps=max_steps, t0=t0)
    for e in events:
        if e["type"] != "log":
            continue
        s = e["step"]
        m = e["metrics"]
        m["loss"] = math.log(2) * math.exp(-0.03 * k * s)
        m["rewards/margins"] = 0.06 * k * s + 0.04 * math.sin(s)
        m["rewards/chosen"] = -0.02 * s * (1.5 - beta)
        m["rewards/rejected"] = m["rewards/chosen"] - m["rewards/margins"]
        m["rewards/accuracies"] = min(1.0, 0.5 + 0.02 * k * s)
    return events


def write_fixture_runs(make_run: Callable[..., Path], root: Path) -> None:
    failed = [*learning_events(6), {"v": 1, "seq": 99, "t": T0 + 14, "type": "failed", "kind": "oom", "message": "CUDA out of memory", "hint": "halve the batch"}]
    make_run(FAILED, failed, state="failed", kind="oom", message="CUDA out of memory", hint="halve the batch", config={"beta": 0.5})
    done = [*learning_events(30), {"v": 1, "seq": 99, "t": T0 + 61, "type": "finished", "step": 30}]
    make_run(FINISHED, done, state="finished", config={"beta": 0.1})
    t1 = T0 + 100
    first = [*beta_events(30, 0.05, t0=t1), {"v": 1, "seq": 99, "t": t1 + 61, "type": "finished", "step": 30}]
    make_run(LADDER[0], first, state="finished", config={"beta": 0.05, "group": GROUP}, created_at=t1, started_at=t1, ended_at=t1 + 61)
    t2 = t1 + 70
    make_run(LADDER[1], beta_events(18, 0.1, t0=t2), state="running", config={"beta": 0.1, "group": GROUP}, created_at=t1, started_at=t2)
    make_run(
        LADDER[2], [], state="queued", config={"beta": 0.5, "group": GROUP}, created_at=t1, max_steps=None,
        phase=f"queued: position 1, gpu0 busy with {LADDER[1]}",
    )
    broken = root / BROKEN
    broken.mkdir(parents=True)
    (broken / "events.jsonl").write_text(json.dumps(learning_events(2)[0]) + "\n")
