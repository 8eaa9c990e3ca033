"""Outcome records for docs/reliability.md, written only when asked for.

Set ``DPO_TUI_RELIABILITY_REPORT=path`` (``make reliability`` does) and each fault, bad-input, security and
load case appends its outcome and figures there; ``scripts/reliability_report.py PATH`` turns them into the
document. Without it nothing is written: a plain test run leaves no files behind.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "DPO_TUI_RELIABILITY_REPORT"


def results_path() -> Path | None:
    env = os.environ.get(ENV, "").strip()
    return Path(env) if env else None


def record_outcome(suite: str, case: str, outcome: str, **figures: object) -> None:
    """Append one case's outcome (e.g. 'recovered', 'rejected', 'survived') and its measured figures."""
    path = results_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"suite": suite, "case": case, "outcome": outcome, "t": time.time(), **figures}, default=str) + "\n"
    # One write per record in append mode: records from parallel test workers never interleave.
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
