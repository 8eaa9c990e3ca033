"""best_checkpoint: the lowest eval loss among the saved weights, else the lowest train loss with a note."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dpo_tui.core.checkpoints import FINAL, Candidate, best_checkpoint, pick_best, value_at
from dpo_tui.core.events import RunHistory
from dpo_tui.core.runs.folder import Checkpoint


def cands(*steps: int, final: int | None = None) -> list[Candidate]:
    out = [Candidate(f"checkpoint-{s}", s, Path(f"c{s}")) for s in steps]
    if final is not None:
        out.append(Candidate(FINAL, final, Path("adapter")))
    return out


TRAIN = [(s, 0.7 - 0.01 * s) for s in range(1, 61)]  # falls all the way: the newest always wins on train loss


def test_value_at() -> None:
    points = [(10, 0.5), (20, None), (30, 0.4)]
    assert value_at(points, 5) is None
    assert value_at(points, 10) == 0.5
    assert value_at(points, 25) == 0.5  # a gap keeps the last good value
    assert value_at(points, 99) == 0.4


def test_picks_lowest_eval_loss() -> None:
    evals = [(20, 0.60), (40, 0.52), (60, 0.58)]
    best = pick_best(cands(20, 40, 60, final=60), evals, TRAIN)
    assert best is not None and best.candidate.name == "checkpoint-40" and best.metric == "eval_loss"
    assert best.checkpoint_step == 40 and not best.is_final
    assert "eval loss" in best.note and "0.52" in best.note


def test_final_adapter_wins_a_tie_at_its_step() -> None:
    best = pick_best(cands(20, 60, final=60), [(20, 0.6), (60, 0.5)], TRAIN)
    assert best is not None and best.is_final and best.checkpoint_step is None


def test_falls_back_to_train_loss_with_a_note() -> None:
    best = pick_best(cands(20, 40), [], TRAIN)
    assert best is not None and best.candidate.name == "checkpoint-40" and best.metric == "loss"
    assert "no eval split" in best.note


def test_nothing_saved_or_nothing_logged() -> None:
    assert pick_best([], [(20, 0.5)], TRAIN) is None
    best = pick_best(cands(20, final=30), [], [])
    assert best is not None and best.is_final and best.value is None and "newest" in best.note


@dataclass
class FakeRun:
    root: Path
    saved: list[Checkpoint] = field(default_factory=list)
    final: bool = False

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    def checkpoints(self) -> list[Checkpoint]:
        return self.saved

    def final_weights_dir(self) -> Path | None:
        return self.root / "adapter" if self.final else None


@pytest.mark.parametrize("with_eval", [True, False])
def test_best_checkpoint_of_a_run(tmp_path: Path, with_eval: bool) -> None:
    h = RunHistory()
    h.apply([{"type": "started", "max_steps": 30}])
    h.apply({"type": "log", "step": s, "metrics": {"loss": 0.7 - 0.02 * s}} for s in range(1, 31))
    if with_eval:
        h.apply({"type": "eval", "step": s, "metrics": {"eval_loss": v}} for s, v in [(10, 0.6), (20, 0.55), (30, 0.7)])
    run = FakeRun(tmp_path, [Checkpoint(tmp_path / f"checkpoint-{s}", s, s != 25) for s in (10, 20, 25, 30)], final=True)
    best = best_checkpoint(run, h)
    assert best is not None
    if with_eval:
        assert best.candidate.name == "checkpoint-20"
    else:
        assert best.is_final and best.candidate.step == 30  # the final adapter, named as such
