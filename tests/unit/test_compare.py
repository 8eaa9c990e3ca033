"""Compare on fixture runs: final/best metrics, diff of only what differs, legend labels, the --json shape."""

from __future__ import annotations

import json
from pathlib import Path

from dpo_tui.core import compare as cmp
from dpo_tui.core import runs
from dpo_tui.core.config import RunConfig
from dpo_tui.core.events import EventWriter
from tests.support.cli import run_cli


def _fixture_run(root: Path, beta: float, margins: list[float], group: str = "ladder-x") -> runs.Run:
    run = runs.create_run(root, RunConfig(beta=beta, group=group))
    with EventWriter(run.events_path) as w:
        w.emit("started", max_steps=len(margins))
        for step, m in enumerate(margins, start=1):
            w.emit("log", step=step, metrics={"loss": 0.7 - m / 10, "rewards/margins": m, "rewards/accuracies": min(1.0, m),
                                              "rewards/chosen": -m / 4, "rewards/rejected": -m})
        w.emit("finished", step=len(margins))
    run.update_status(state="finished", step=len(margins), max_steps=len(margins))
    return run


def test_compare_document(tmp_path: Path) -> None:
    a = _fixture_run(tmp_path, 0.05, [0.1, 0.9, 0.6])
    b = _fixture_run(tmp_path, 0.5, [0.2, 0.3, 0.4])
    doc = cmp.compare([a, b])
    assert doc["diff"] == {"beta": [0.05, 0.5]}
    ra, rb = doc["runs"]
    assert ra["label"] == "β=0.05" and rb["label"] == "β=0.5"
    assert ra["final"]["rewards/margins"] == 0.6 and ra["best"]["rewards/margins"] == 0.9
    assert ra["best"]["loss"] == 0.7 - 0.09
    assert ra["best"]["rewards/rejected"] == -0.9  # lower rejected reward is better
    assert set(ra) >= {"id", "config", "final", "best"}


def test_identical_configs_have_empty_diff_and_id_labels(tmp_path: Path) -> None:
    a = _fixture_run(tmp_path, 0.1, [0.1])
    b = _fixture_run(tmp_path, 0.1, [0.2])
    assert cmp.config_diff([a.config().model_dump(), b.config().model_dump()]) == {}
    assert cmp.legend_labels([{}, {}], ["x", "y"]) == ["x", "y"]


def test_compare_cli_json_and_group(tmp_path: Path) -> None:
    a = _fixture_run(tmp_path, 0.05, [0.1, 0.5])
    b = _fixture_run(tmp_path, 0.1, [0.1, 0.3])
    c = _fixture_run(tmp_path, 0.5, [0.1, 0.2])
    _fixture_run(tmp_path, 0.2, [0.1], group="other")
    proc = run_cli("compare", "--runs-dir", str(tmp_path), "--group", "ladder-x", "--json", check=True)
    doc = json.loads(proc.stdout)
    assert [r["id"] for r in doc["runs"]] == [a.id, b.id, c.id]
    assert doc["diff"]["beta"] == [0.05, 0.1, 0.5]
    text = run_cli("compare", "--runs-dir", str(tmp_path), a.id, b.id, check=True).stdout
    assert "beta" in text and "rewards/margins" in text
    bad = run_cli("compare", "--runs-dir", str(tmp_path), a.id)
    assert bad.returncode == 2 and "at least two" in bad.stderr
