"""Faults an operator meets around evaluation and pair making: damaged job folders, hostile files, full or
read-only disks, a judge that is not there, two commands on one job at once.

Every case either pins behaviour that already holds or a fix; each records its outcome (suites "eval" and
"pairs") for ``scripts/reliability_report.py``. The contract everywhere: a clear one-line refusal (exit 2) or a
clean skip-and-count, never a traceback, never a half-written file, never a lost job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import run_cli_inprocess
from tests.support.mounts import tmpfs
from tests.support.reliability import record_outcome

ROWS = [["Paris.", "The capital of France is Paris, on the Seine."],
        ["Four.", "Two plus two makes four, as every child learns."],
        ["Blue.", "The sky looks blue because of Rayleigh scattering."]]


def candidate_line(i: int, texts: list[str]) -> str:
    return json.dumps({
        "index": i, "line": i + 1, "prompt": f"Question {i}?", "messages": [{"role": "user", "content": f"Question {i}?"}],
        "conversational": False,
        "candidates": [{"id": f"c{k}", "text": t, "tokens": len(t.split()), "finish": "eos", "seed": k,
                        "instruction": None} for k, t in enumerate(texts)],
        "provenance": {"model": "sample", "adapter": None, "created_at": 0.0}}) + "\n"


def pairs_folder(d: Path, rows: list[list[str]] = ROWS, extra: bytes = b"") -> Path:
    """A pairs folder as ``pairs generate`` leaves it, with ``extra`` bytes spliced in after the first line."""
    d.mkdir(parents=True, exist_ok=True)
    lines = [candidate_line(i, t).encode() for i, t in enumerate(rows)]
    (d / "candidates.jsonl").write_bytes(lines[0] + extra + b"".join(lines[1:]))
    return d


def assert_clean(proc, code: int | None = None) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "internal error" not in out.lower(), out
    if code is not None:
        assert proc.returncode == code, f"exit {proc.returncode}\n{out}"
    return out


def no_temp_files(*folders: Path) -> None:
    for folder in folders:
        left = [p for p in folder.rglob("*") if p.name.endswith(".tmp")] if folder.is_dir() else []
        assert not left, left


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


# --- pairs label: hostile candidates and labels -----------------------------------------------------------
HOSTILE_CANDIDATES = {
    "wrong-types": json.dumps({"index": "x", "candidates": "nope", "messages": 3}).encode() + b"\n",
    "not-an-object": b"[1, 2, 3]\n",
    "candidates-wrong-types": json.dumps({"index": 7, "line": 8, "prompt": 5, "messages": [],
                                          "candidates": [{"id": 1, "text": None}, 4]}).encode() + b"\n",
    "invalid-utf8": b'{"index": 9, "prompt": "\xff\xfe bad"}\n',
    "ten-mb-line": b'{"index": 9, "prompt": "' + b"x" * (10 * 1024 * 1024) + b'"}\n',
    "nul-bytes": b"\x00\x00\x00\n",
    "infinite-tokens": candidate_line(8, ["a b", "c d e"]).replace('"tokens": 2', '"tokens": Infinity').encode(),
    "huge-seed": candidate_line(8, ["a b", "c d e"]).replace('"seed": 0', '"seed": 1e400').encode(),
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000 + b"\n",
}


@pytest.mark.parametrize("case", list(HOSTILE_CANDIDATES))
def test_pairs_label_skips_and_counts_a_hostile_candidates_line(tmp_path: Path, case: str) -> None:
    d = pairs_folder(tmp_path / "p", extra=HOSTILE_CANDIDATES[case])
    proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "shorter", "--json")
    assert_clean(proc, 0)
    summary = json.loads(proc.stdout)
    assert summary["pairs"] == 3, summary
    print(summary)
    no_temp_files(d)
    record_outcome("pairs", f"label-candidates/{case}", "survived")


def test_pairs_label_by_hand_survives_garbage_out_of_range_and_unknown_ids(tmp_path: Path) -> None:
    d = pairs_folder(tmp_path / "p")
    good = {"index": 0, "decision": "a", "chosen": "c0", "rejected": "c1", "edited": {}, "t": 0.0}
    lines = [
        b"not json at all\n", b"\xff\xfe\x00\n", b"[" * 100_000 + b"]" * 100_000 + b"\n",
        json.dumps({"index": "zero", "decision": "a"}).encode() + b"\n",
        json.dumps({"index": 99, "decision": "a", "chosen": "c0", "rejected": "c1"}).encode() + b"\n",  # no prompt 99
        json.dumps({"index": -1, "decision": "b", "chosen": "c1", "rejected": "c0"}).encode() + b"\n",
        json.dumps(good).encode() + b"\n",
        json.dumps({**good, "index": 1, "chosen": "c7", "rejected": "c0"}).encode() + b"\n",  # unknown candidate
        json.dumps({**good, "index": 2, "edited": {"c0": 5, "c9": "x"}}).encode() + b"\n",
        b'{"index": 2, "decision": "a", "chos',  # torn tail
    ]
    (d / "labels.jsonl").write_bytes(b"".join(lines))
    proc = run_cli_inprocess("pairs", "label", str(d), "--by", "hand", "--json")
    assert_clean(proc)
    assert proc.returncode in (0, 2)  # 2 only when the data check finds the (tiny) output unusable
    summary = json.loads(proc.stdout)
    assert summary["pairs"] == 2 and summary["dropped"]["bad_label"] == 1, summary
    no_temp_files(d)
    record_outcome("pairs", "label-hand/garbage-range-unknown-ids", "survived")


def test_pairs_label_refuses_when_pairs_jsonl_is_a_folder(tmp_path: Path) -> None:
    d = pairs_folder(tmp_path / "p")
    (d / "pairs.jsonl").mkdir()
    (d / "pairs.jsonl" / "keep").write_text("mine")
    proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "shorter")
    out = assert_clean(proc, 2)
    assert "pairs.jsonl" in out
    assert (d / "pairs.jsonl" / "keep").read_text() == "mine"
    no_temp_files(d)
    record_outcome("pairs", "label/pairs-jsonl-is-a-folder", "rejected")


def test_pairs_label_on_a_read_only_folder_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    import subprocess

    where = tmp_path / "ro"
    with tmpfs(where, "4m"):
        pairs_folder(where / "p")
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        proc = run_cli_inprocess("pairs", "label", str(where / "p"), "--rule", "shorter")
        out = assert_clean(proc, 2)
        assert "read-only" in out.lower() or "write" in out.lower(), out
        assert sorted(p.name for p in (where / "p").iterdir()) == ["candidates.jsonl"]
    record_outcome("pairs", "label/read-only-folder", "rejected")


def test_pairs_label_on_a_full_disk_keeps_the_previous_output(tmp_path: Path) -> None:
    where = tmp_path / "full"
    with tmpfs(where, "256k"):
        d = pairs_folder(where / "p")
        assert run_cli_inprocess("pairs", "label", str(d), "--rule", "shorter").returncode == 0
        before = (d / "pairs.jsonl").read_bytes()
        big = ["word " * 20_000, "w"]  # the new output cannot fit
        with open(d / "candidates.jsonl", "a") as fh:
            fh.write(candidate_line(3, big))
        fill(where / "filler")
        proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "longer")
        out = assert_clean(proc, 2)
        assert "space" in out.lower() or "full" in out.lower(), out
        assert (d / "pairs.jsonl").read_bytes() == before
        no_temp_files(d)
    record_outcome("pairs", "label/full-disk", "rejected")


async def test_ab_queue_skips_hostile_candidates_and_labels(tmp_path: Path) -> None:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.pairs_queue import PairsQueueScreen
    from tests.support.uikit import make_services, screen_text, until

    extra = b"".join(HOSTILE_CANDIDATES.values())
    d = pairs_folder(tmp_path / "pairs" / "job", extra=extra)
    (d / "labels.jsonl").write_bytes(b"garbage\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n"
                                     + json.dumps({"index": 99, "decision": "a", "chosen": "c0"}).encode() + b"\n")
    app = DpoTuiApp(make_services(tmp_path / "runs"), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(PairsQueueScreen(d))
        await until(pilot, lambda: isinstance(app.screen, PairsQueueScreen))
        screen = app.screen
        await pilot.pause()
        assert "Question 0" in screen_text(app)
        await pilot.press("a")
        assert screen.queue.current().index == 1
    record_outcome("pairs", "ab-queue/hostile-candidates-and-labels", "survived")


# --- eval: damaged job folders ------------------------------------------------------------------------------
def eval_job(root: Path, plan: bytes | None, status: bytes | None, job_id: str = "20251126-213000") -> Path:
    job = root / ".eval" / job_id
    job.mkdir(parents=True)
    if plan is not None:
        (job / "plan.json").write_bytes(plan)
    if status is not None:
        (job / "status.json").write_bytes(status)
    return job


PLAN = {"id": "20251126-213000", "runs_root": "", "base_model": "sample", "prompts_file": "p.txt",
        "targets": [{"run_id": "r1", "run_path": "/nonexistent/r1", "adapter_path": "/nonexistent/r1/adapter",
                     "checkpoint": "final", "beta": 0.1, "name": "r1"}]}
DONE = json.dumps({"state": "done", "created_at": 0.0, "ended_at": 1.0, "reports": {}}).encode()


@pytest.mark.parametrize("status", [b'{"state": "runn', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b"[]"])
def test_eval_commands_on_a_torn_status_are_clean(tmp_path: Path, status: bytes) -> None:
    root = tmp_path / "runs"
    job = eval_job(root, json.dumps(PLAN).encode(), status)
    for args in (["--list"], ["--list", "--json"], ["--stop", job.name], ["--resume", job.name]):
        proc = run_cli_inprocess("eval", "--runs-dir", str(root), *args)
        assert_clean(proc)
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    record_outcome("eval", f"job/torn-status-{len(status)}", "survived")


def test_eval_stop_on_a_finished_job_says_so(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    job = eval_job(root, json.dumps(PLAN).encode(), DONE)
    proc = run_cli_inprocess("eval", "--runs-dir", str(root), "--stop", job.name)
    out = assert_clean(proc, 0)
    assert "done" in out
    assert json.loads((job / "status.json").read_text())["state"] == "done"
    proc = run_cli_inprocess("eval", "--runs-dir", str(root), "--resume", job.name)
    assert "already done" in assert_clean(proc, 2)
    record_outcome("eval", "job/stop-finished", "survived")


@pytest.mark.parametrize("case", ["garbage", "deep", "negative-samples", "huge-tokens", "huge-batch", "no-targets"])
def test_eval_resume_refuses_a_hostile_plan(tmp_path: Path, case: str) -> None:
    root = tmp_path / "runs"
    plan = {"garbage": b"\x00garbage", "deep": b"[" * 100_000 + b"]" * 100_000,
            "negative-samples": json.dumps({**PLAN, "samples": -5}).encode(),
            "huge-tokens": json.dumps({**PLAN, "max_new_tokens": 10 ** 30}).encode(),
            "huge-batch": json.dumps({**PLAN, "batch_size": 10 ** 12}).encode(),
            "no-targets": json.dumps({**PLAN, "targets": []}).encode()}[case]
    failed = json.dumps({"state": "failed", "created_at": 0.0}).encode()
    job = eval_job(root, plan, failed)
    proc = run_cli_inprocess("eval", "--runs-dir", str(root), "--resume", job.name, "--detach")
    out = assert_clean(proc, 2)
    assert "plan" in out.lower() or "prompts" in out.lower(), out
    assert json.loads((job / "status.json").read_text())["state"] == "failed"  # nothing launched
    record_outcome("eval", f"job/hostile-plan-{case}", "rejected")


# --- eval: hostile report files in RUN/eval/ ------------------------------------------------------------------
def hostile_reports(run_path: Path) -> None:
    from dpo_tui.core.eval.report import write_report
    from tests.support.eval_reports import make_report

    path = write_report(run_path, make_report(run_path.name, eval_id="20251126-213000"))
    good = json.loads(path.read_text())
    folder = path.parent
    nan = json.dumps(good).replace('"accuracy": 0.66', '"accuracy": NaN').replace('"win_rate": 0.64', '"win_rate": Infinity')
    (folder / "20251126-213001.json").write_text(nan)
    (folder / "20251126-213002.json").write_text(json.dumps({**good, "id": "x" * 1_000_000, "base_model": "y" * 1_000_000}))
    (folder / "20251126-213003.json").write_text(json.dumps({**good, "judge": "shorter", "prompts": 7, "beta": "high"}))
    (folder / "20251126-213004.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (folder / "20251126-213005.json").write_bytes(b"\xff\xfe")
    (folder / "20251126-213006.json").mkdir()


def test_runs_json_and_compare_survive_hostile_reports(tmp_path: Path) -> None:
    from dpo_tui.core.config import SAMPLE_PRESET, build_config
    from dpo_tui.core.runs import RunStatus, create_run

    root = tmp_path / "runs"
    run = create_run(root, build_config(dict(SAMPLE_PRESET)), run_id="20251126-212000-tiny-chat-b0.1")
    run.write_status(RunStatus(state="finished", attempt=1, step=30, created_at=0.0))
    hostile_reports(run.path)
    proc = run_cli_inprocess("runs", "--runs-dir", str(root), "--json")
    assert_clean(proc, 0)
    json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"runs --json printed {c}, which is not JSON"))
    for args in (["--json"], []):
        proc = run_cli_inprocess("compare", "--runs-dir", str(root), run.path.name, *args)
        assert_clean(proc)
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    record_outcome("eval", "report/hostile-reports-runs-compare", "survived")


# --- every JSON reader against a deeply nested document ---------------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def _deep_file(tmp_path: Path, name: str, data: bytes = DEEP) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _raises(kind: type[BaseException], call) -> None:
    """``call`` must raise ``kind`` (the reader's own clear error), never a RecursionError."""
    with pytest.raises(kind):
        call()


def _read_job_status(tmp_path: Path) -> None:
    from dpo_tui.core.job_folder import read_status

    assert read_status(_deep_file(tmp_path, "status.json").parent) is None


def _progress_tail(tmp_path: Path) -> None:
    from dpo_tui.core.job_folder import ProgressTail

    assert list(ProgressTail(_deep_file(tmp_path, "progress.jsonl", DEEP + b"\n").parent).new_events()) == []


def _eval_job_view(tmp_path: Path) -> None:
    from dpo_tui.core.eval.jobs import read_eval_job

    job = _deep_file(tmp_path, "job/progress.jsonl", DEEP + b"\n").parent
    _deep_file(tmp_path, "job/status.json")
    assert read_eval_job(job).state == "unreadable"


def _run_status(tmp_path: Path) -> None:
    from dpo_tui.core.runs.status import loads_strict

    _raises(ValueError, lambda: loads_strict(DEEP))


def _events(tmp_path: Path) -> None:
    from dpo_tui.core.events import last_seq, read_events

    path = _deep_file(tmp_path, "events.jsonl", DEEP + b"\n" + DEEP_OBJECT + b"\n")
    assert read_events(path) == [] and last_seq(path) == 0


def _chat_protocol(tmp_path: Path) -> None:
    from dpo_tui.core.chat_protocol import decode

    assert decode(DEEP_OBJECT) is None


def _model_config(tmp_path: Path) -> None:
    from dpo_tui.core.model_config import read_json

    data, err = read_json(_deep_file(tmp_path, "config.json", DEEP_OBJECT))
    assert data is None and "nested" in (err or ""), err


def _prompts_file(tmp_path: Path) -> None:
    from dpo_tui.core.errors import UserError
    from dpo_tui.core.prompts_file import read_prompts

    _raises(UserError, lambda: read_prompts(_deep_file(tmp_path, "p.jsonl", DEEP_OBJECT + b"\n")))


def _facts_file(tmp_path: Path) -> None:
    from dpo_tui.core.errors import UserError
    from dpo_tui.core.eval.facts import read_facts

    _raises(UserError, lambda: read_facts(_deep_file(tmp_path, "f.jsonl", DEEP_OBJECT + b"\n")))


def _safetensors_header(tmp_path: Path) -> None:
    import struct

    from dpo_tui.core.safetensors_header import SafetensorsError, read_header

    path = _deep_file(tmp_path, "model.safetensors", struct.pack("<Q", len(DEEP_OBJECT)) + DEEP_OBJECT)
    _raises(SafetensorsError, lambda: read_header(path))


def _eval_report(tmp_path: Path) -> None:
    from dpo_tui.core.eval.report import UnreadableReport, read_report

    _raises(UnreadableReport, lambda: read_report(_deep_file(tmp_path, "eval/r.json")))


def _pairs_candidates_and_labels(tmp_path: Path) -> None:
    from dpo_tui.core.pairs.candidates import scan_candidates
    from dpo_tui.core.pairs.queue import read_hand_labels

    d = _deep_file(tmp_path, "p/candidates.jsonl", DEEP + b"\n").parent
    _deep_file(tmp_path, "p/labels.jsonl", DEEP_OBJECT + b"\n")
    assert scan_candidates(d).rows == [] and read_hand_labels(d) == {}


def _run_config(tmp_path: Path) -> None:
    from dpo_tui.core.config import load_config
    from dpo_tui.core.errors import UserError

    _raises(UserError, lambda: load_config(_deep_file(tmp_path, "run.json", DEEP_OBJECT)))


def _export_plan(tmp_path: Path) -> None:
    from dpo_tui.core.errors import UserError
    from dpo_tui.core.export_plan import ExportPlan

    _raises(UserError, lambda: ExportPlan.from_json(DEEP.decode()))


def _data_tokenizer_config(tmp_path: Path) -> None:
    from dpo_tui.core.data.tokenizer import _read_json

    assert _read_json(_deep_file(tmp_path, "tokenizer_config.json", DEEP_OBJECT)) == {}


def _answers_log(tmp_path: Path) -> None:
    from dpo_tui.worker.eval.answers import read_answers

    assert read_answers(_deep_file(tmp_path, "job/answers.jsonl", DEEP + b"\n").parent) == {}


DEEP_READERS = {f.__name__.lstrip("_"): f for f in (
    _read_job_status, _progress_tail, _eval_job_view, _run_status, _events, _chat_protocol, _model_config,
    _prompts_file, _facts_file, _safetensors_header, _eval_report, _pairs_candidates_and_labels, _run_config,
    _export_plan, _data_tokenizer_config, _answers_log)}


@pytest.mark.parametrize("reader", list(DEEP_READERS))
def test_every_json_reader_survives_a_deeply_nested_document(tmp_path: Path, reader: str) -> None:
    DEEP_READERS[reader](tmp_path)
    record_outcome("pairs" if "pairs" in reader else "eval", f"deep-nesting/{reader}", "survived")
