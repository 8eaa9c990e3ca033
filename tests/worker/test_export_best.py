"""``dpo-tui export --checkpoint best``: the weights :func:`dpo_tui.core.checkpoints.best_checkpoint` picks.

A copy of the session's trained sample run gets eval-split events whose lowest loss sits at an earlier
checkpoint; the export must take that checkpoint, say why on stderr, and write a merged model from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dpo_tui.core import events as ev
from dpo_tui.core.runs import Run
from tests.support.cli import run_cli_inprocess


def _copy(run: Run, root: Path) -> Run:
    root.mkdir(parents=True, exist_ok=True)
    return Run(Path(shutil.copytree(run.path, root / run.path.name, symlinks=True)))


def _plan_of(stdout: str) -> dict:
    return next(e["plan"] for e in map(json.loads, stdout.splitlines()) if e.get("type") == "plan")


def test_best_is_the_lowest_eval_loss_checkpoint(trained_run: Run, tmp_path: Path) -> None:
    run = _copy(trained_run, tmp_path / "runs")
    steps = sorted(c.step for c in run.checkpoints() if c.complete)
    assert len(steps) >= 2, f"the sample run saved too few checkpoints: {steps}"
    early = steps[0]
    with ev.EventWriter(run.events_path) as writer:
        for step in steps:
            writer.emit(ev.EVAL, step=step, metrics={"eval_loss": 0.40 if step == early else 0.40 + 0.01 * step})
    out = tmp_path / "merged"
    proc = run_cli_inprocess("export", run.id, "--runs-dir", str(run.path.parent), "--checkpoint", "best",
                             "--merged", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = _plan_of(proc.stdout)
    assert plan["source_label"] == f"checkpoint-{early}" and plan["step"] == early, plan
    assert f"checkpoint-{early}: lowest eval loss" in proc.stderr
    assert (out / "config.json").exists() and any(out.glob("*.safetensors"))


def test_best_without_an_eval_split_says_it_used_train_loss(trained_run: Run, tmp_path: Path) -> None:
    run = _copy(trained_run, tmp_path / "runs")
    proc = run_cli_inprocess("export", run.id, "--runs-dir", str(run.path.parent), "--checkpoint", "best",
                             "--merged", str(tmp_path / "merged"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "lowest train loss (no eval split" in proc.stderr
    assert _plan_of(proc.stdout)["source_label"] in {"final adapter", *(f"checkpoint-{c.step}" for c in run.checkpoints())}


def test_a_bad_checkpoint_word_is_refused_by_the_parser(tmp_path: Path) -> None:
    proc = run_cli_inprocess("export", "nosuch", "--runs-dir", str(tmp_path), "--checkpoint", "newest")
    assert proc.returncode == 2 and "expected a step number or 'best'" in proc.stderr
    assert "Traceback" not in proc.stderr
