"""The CLI's text and handles: run names as handles, tables sized to their data, --follow on a terminal
and a pipe, estimate agreeing with the console, help without markup, what quitting leaves running."""

from __future__ import annotations

import io
import json
import os
import pty
import re
from pathlib import Path

import pytest

from dpo_tui.cli import build_parser
from dpo_tui.core import runs
from dpo_tui.core.config import SAMPLE_PRESET, build_config
from dpo_tui.core.errors import UserError
from dpo_tui.core.run_names import difference_tags, run_id_for
from dpo_tui.core.run_states import state_label
from dpo_tui.core.runs.resolve import resolve_run
from tests.support.cli import run_cli_inprocess
from tests.support.uikit import T0, log_event


def _run(root: Path, run_id: str, **config) -> runs.Run:
    return runs.create_run(root, build_config({**SAMPLE_PRESET, **config}), run_id=run_id)


# --- 13: a run's name is a handle -------------------------------------------------------------------
def test_a_name_resolves_like_an_id(tmp_path: Path) -> None:
    a = _run(tmp_path, "20260101-000000-tiny-chat-b0.1", name="r16")
    b = _run(tmp_path, "20260101-000001-tiny-chat-b0.1", name="ipo")
    assert resolve_run(tmp_path, "r16").path == a.path
    assert resolve_run(tmp_path, "ipo").path == b.path
    assert resolve_run(tmp_path, b.id).path == b.path  # the id still works
    assert resolve_run(tmp_path, "20260101-000000").path == a.path  # and a unique prefix
    assert resolve_run(tmp_path, str(a.path)).path == a.path  # and a folder
    with pytest.raises(UserError, match="No run"):
        resolve_run(tmp_path, "nope")


def test_a_shared_name_is_refused_with_both_ids(tmp_path: Path) -> None:
    a = _run(tmp_path, "20260101-000000-tiny-chat-b0.1", name="twin")
    b = _run(tmp_path, "20260101-000001-tiny-chat-b0.1", name="twin")
    for command in (["stop"], ["attach"], ["resume"], ["delete", "--yes"], ["export", "--merged", str(tmp_path / "m")]):
        proc = run_cli_inprocess(command[0], "--runs-dir", str(tmp_path), "twin", *command[1:])
        assert proc.returncode == 2, (command, proc.stderr)
        assert "2 runs are named 'twin'" in proc.stderr and a.id in proc.stderr and b.id in proc.stderr, proc.stderr
    assert a.path.is_dir() and b.path.is_dir()


def test_stop_by_name(tmp_path: Path) -> None:
    run = _run(tmp_path, "20260101-000000-tiny-chat-b0.1", name="mine")
    proc = run_cli_inprocess("stop", "--runs-dir", str(tmp_path), "mine", "--wait", "0")
    assert proc.returncode == 0, proc.stderr
    assert run.id in proc.stdout


# --- 2: `runs` and `compare` tables --------------------------------------------------------------------
def _with_metrics(run: runs.Run, step: int, max_steps: int, loss: float, margin: float) -> None:
    events = [{"v": 1, "seq": 1, "t": T0, "attempt": 1, "type": "started", "max_steps": max_steps},
              log_event(step, T0 + 1, 2, loss=loss, **{"rewards/margins": margin, "rewards/accuracies": 1.0})]
    run.events_path.write_text("".join(json.dumps(e) + "\n" for e in events))
    run.update_status(state="stopped", step=step, max_steps=max_steps, created_at=T0, started_at=T0, ended_at=T0 + 5)


def test_runs_table_keeps_values_true_and_columns_in_line(tmp_path: Path) -> None:
    short = _run(tmp_path, "20260101-000000-x-b0.1")
    long = _run(tmp_path, "20260101-000001-tiny-chat-b0.1-r16-lr1e-4-ipo-a-long-name", beta=0.1)
    _with_metrics(short, 162, 1000, 1.3e-5, 1234.5)
    _with_metrics(long, 3, 30, 0.25, -0.5)
    proc = run_cli_inprocess("runs", "--runs-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("  2026") or line.startswith("  ID")]
    assert len(lines) == 3, proc.stdout
    assert "1.30e-5" in proc.stdout and "0.000" not in proc.stdout and "162/1000" in proc.stdout
    # The id column is as wide as the longest id, and every column starts at the same place on each line.
    header = lines[0]
    assert header.index("STATE") == len("  ") + len(long.id) + 1
    for line in lines[1:]:
        assert line.index("stopped") == header.index("STATE"), proc.stdout


def test_compare_columns_line_up_with_wide_values(tmp_path: Path) -> None:
    a = _run(tmp_path, "20260101-000000-tiny-chat-b0.1", beta=0.1)
    b = _run(tmp_path, "20260101-000001-tiny-chat-b0.123456789", beta=0.123456789, name="a-much-longer-name-than-usual")
    _with_metrics(a, 5, 30, 1.3e-5, 123456.789)
    _with_metrics(b, 5, 30, 0.5, 0.25)
    proc = run_cli_inprocess("compare", "--runs-dir", str(tmp_path), a.id, b.id)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    table = lines[lines.index("") + 1:]
    header = table[0]
    second = header.index(" ", header.index("metric (final / best)") + 22)
    starts = {len(line) - len(line[second:].lstrip()) for line in table if len(line) > second}
    assert len(starts) == 1, proc.stdout  # the second column starts at the same place on every line
    assert "1.3e-5" in proc.stdout


# --- 14: --follow on a terminal and on a pipe --------------------------------------------------------------
def _finished_run(tmp_path: Path) -> runs.Run:
    run = _run(tmp_path, "20260101-000000-tiny-chat-b0.1")
    _with_metrics(run, 30, 30, 0.25, 1.0)
    run.update_status(state="finished")
    return run


def test_follow_redraws_in_place_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.cli import runs_cmd

    run = _finished_run(tmp_path)
    master, slave = pty.openpty()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as tty:
            monkeypatch.setattr("sys.stdout", tty)
            assert runs_cmd.follow(run, poll=0.01) == 0
            tty.flush()
        out = os.read(master, 65536).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "\r\x1b[K" in out and "30/30" in out
    assert out.rstrip("\r\n").endswith(f"no complete final weights in {run.path}")  # the fixture run saved none
    progress = out.split("\n")[0]
    assert progress.startswith("\r\x1b[K") and "\n" not in progress


def test_follow_prints_plain_lines_on_a_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.cli import runs_cmd

    run = _finished_run(tmp_path)
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stdout", pipe)
    assert runs_cmd.follow(run, poll=0.01) == 0
    out = pipe.getvalue()
    assert "\r" not in out and "\x1b" not in out
    assert out.splitlines()[0].startswith("finished") and "30/30" in out.splitlines()[0]


# --- 15: estimate uses what train would use ------------------------------------------------------------
def test_estimate_defaults_match_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.core import gpus, vram
    from dpo_tui.core.models import inspect_model
    from dpo_tui.core.run_defaults import default_config, estimate_device
    from dpo_tui.ui.setup_state import SetupState

    cpu = gpus.GpuInventory(ram_total=16 << 30, ram_available=8 << 30)
    monkeypatch.setattr(gpus, "inventory", lambda *a, **k: cpu)
    proc = run_cli_inprocess("estimate", "--model", "sample", "--json")
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    # The console's experiment form for the sample model, estimated the way its VRAM bar does.
    console_config = build_config(SetupState().config_values())
    assert default_config({"model": "sample"}) == console_config
    free, device = estimate_device(cpu, console_config)
    assert (free, device) == (8 << 30, "cpu")
    info = inspect_model(console_config.resolved_model())
    console = vram.estimate(info, console_config, padded_length=cli["padded_length"], free_bytes=free, device=device)
    assert cli["total_bytes"] == console.total_bytes
    assert cli["components"]["cuda_context"] == 0
    assert cli["total_bytes"] < 100 << 20  # tens of MiB, not 0.69 GiB
    assert cli["padded_length"] <= console_config.max_length


# --- 16: help texts ---------------------------------------------------------------------------------
def _subparsers(parser):
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _subparsers(sub)


def test_no_help_shows_markup_or_a_dict() -> None:
    parsers = list(_subparsers(build_parser()))
    assert len(parsers) > 10
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text, (parser.prog, text)
        assert "%(" not in text and "{'option_strings'" not in text and "'dest':" not in text, (parser.prog, text)
    train = next(p for p in parsers if p.prog.endswith(" train"))
    assert "~30 % slower" in re.sub(r"\s+", " ", train.format_help())


# --- 18, 22: smaller CLI texts ------------------------------------------------------------------------------
def test_rank_above_hidden_size_warns() -> None:
    from dpo_tui.core.preflight import preflight_warnings, rank_warning

    config = build_config({**SAMPLE_PRESET, "lora_rank": 256})  # tiny-chat's hidden size is 128
    assert any("hidden size 128" in w for w in preflight_warnings(config))
    assert rank_warning(build_config({**SAMPLE_PRESET, "lora_rank": 8}), 128) is None
    assert rank_warning(build_config({**SAMPLE_PRESET, "method": "full", "lora_rank": 256}), 128) is None


def test_convert_with_no_usable_row_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"a": 1}\n')
    proc = run_cli_inprocess("data", "convert", str(bad), str(tmp_path / "out.jsonl"), "--drop-bad")
    assert proc.returncode == 2 and "no row is usable" in proc.stderr, proc.stderr
    proc = run_cli_inprocess("data", "convert", str(bad), str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2 and "the 0 usable" not in proc.stderr and "no row is usable" in proc.stderr, proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cancelled_reads_cancelled() -> None:
    assert state_label("stopped", "cancelled") == "cancelled"
    assert state_label("stopped", "user") == "stopped" and state_label("running") == "running"


def test_quitting_lists_the_runs_that_keep_going(tmp_path: Path) -> None:
    from dpo_tui.cli.runs_cmd import active_runs_text, still_running_note

    running = _run(tmp_path, "20260101-000000-tiny-chat-b0.1")
    running.update_status(state="running", pid=os.getpid(), step=3, max_steps=30)
    done = _finished_run(tmp_path / "other")
    summaries = runs.list_runs(tmp_path)
    text = active_runs_text(summaries)
    assert running.id in text and f"dpo-tui attach {running.id}" in text
    assert active_runs_text(runs.list_runs(done.path.parent)) == ""
    assert still_running_note(str(tmp_path / "missing")) == ""


# --- 22: run names say what differs ----------------------------------------------------------------------
def test_run_names_say_what_differs() -> None:
    from datetime import datetime

    base = build_config(dict(SAMPLE_PRESET))
    now = datetime(2026, 1, 2, 3, 4, 5)
    assert run_id_for(base, None, "tiny-chat", now) == "20260102-030405-tiny-chat-b0.1"
    assert difference_tags(base, base) == []
    assert difference_tags(base.model_copy(update={"lora_rank": 16}), base) == ["r16"]
    assert difference_tags(base.model_copy(update={"learning_rate": 1e-4}), base) == ["lr1e-4"]
    assert difference_tags(base.model_copy(update={"loss_type": "ipo"}), base) == ["ipo"]
    many = base.model_copy(update={"loss_type": "ipo", "lora_rank": 32, "learning_rate": 2e-5, "max_length": 512})
    assert difference_tags(many, base) == ["ipo", "r32", "lr2e-5"]
    named = base.model_copy(update={"lora_rank": 16, "name": "try2"})
    assert run_id_for(named, base, "tiny-chat", now) == "20260102-030405-tiny-chat-b0.1-r16-try2"
