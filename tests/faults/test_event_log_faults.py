"""A run folder whose event log is not a readable file, and the names new runs get.

``attach`` on a finished run whose ``events.jsonl`` is a folder must not claim "step 0" nor point at weights
that do not exist; it says why the log cannot be read. A file check with no usable row prints no empty
statistics table. A run launched after another is named by what it changed.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpo_tui.core.config import build_config
from dpo_tui.core.data import check_data
from dpo_tui.core.runs import create_run
from tests.support.cli import run_cli_inprocess
from tests.support.reliability import record_outcome

SUITE = "bad-input"


def _finished_run_with_a_folder_for_a_log(root: Path) -> str:
    run = create_run(root, build_config({"model": "sample", "dataset": "sample"}))
    run.update_status(state="finished", step=30, max_steps=30)
    if run.events_path.exists():
        run.events_path.unlink()
    run.events_path.mkdir()
    return run.id


def test_attach_when_the_event_log_is_a_folder(runs_root: Path) -> None:
    run_id = _finished_run_with_a_folder_for_a_log(runs_root)
    proc = run_cli_inprocess("attach", run_id, "--runs-dir", str(runs_root))
    assert proc.returncode == 0, proc.stderr
    assert f"Finished {run_id} at step 30: no complete final weights" in proc.stdout, proc.stdout
    assert "adapter in" not in proc.stdout
    assert "cannot read the run's event log (events.jsonl: is a folder" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    record_outcome(SUITE, "run-folder/events-log-is-a-folder-on-attach", "reported", category="run-folder")


def test_a_file_with_no_usable_row_prints_no_empty_statistics(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": "", "chosen": "", "rejected": ""}) for _ in range(3)) + "\n")
    text = check_data(path).render()
    assert "0 usable" in text
    assert "(p50 / p99 / max):" not in text, text


def test_a_new_run_is_named_by_what_it_changed(runs_root: Path) -> None:
    first = create_run(runs_root, build_config({"model": "sample", "dataset": "sample"}))
    second = create_run(runs_root, build_config({"model": "sample", "dataset": "sample", "lora_rank": 32}))
    assert "-r32" not in first.id and second.id.endswith("-r32"), (first.id, second.id)
    third = create_run(runs_root, build_config({"model": "sample", "dataset": "sample", "lora_rank": 32}))
    assert "-r32" not in third.id, third.id  # the same settings as the newest run: no tag
