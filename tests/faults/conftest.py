"""Fault-suite plumbing: each case records its outcome and figures for docs/reliability.md.

Records go to ``build/reliability-results.jsonl`` (override with ``DPO_TUI_RELIABILITY_RESULTS``);
``scripts/reliability_report.py`` turns them into the figures.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def results_path() -> Path:
    env = os.environ.get("DPO_TUI_RELIABILITY_RESULTS")
    return Path(env) if env else REPO / "build" / "reliability-results.jsonl"


def record_outcome(suite: str, case: str, outcome: str, **figures: object) -> None:
    """Append one case's outcome (e.g. 'recovered', 'rejected', 'survived') and its measured figures."""
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"suite": suite, "case": case, "outcome": outcome, "t": time.time(), **figures}, default=str) + "\n")


@pytest.fixture
def record():
    return record_outcome
