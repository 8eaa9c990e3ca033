"""The evaluation job end to end on the trained sample run: answers, judge verdicts, stop/resume, kill/resume,
the report, and ``dpo-tui eval`` refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from dpo_tui.core.eval.jobs import ANSWERS_FILE, plan_eval, read_eval_job, resume_eval, start_eval
from dpo_tui.core.job_folder import ProgressTail, read_status, stop_job
from dpo_tui.core.runs import Run
from tests.support.cli import run_cli_inprocess, wait_eval_state

PROMPTS = ["What is the capital of Norway?", "Name a primary colour.", "How many legs does a spider have?",
           "What is two plus two?", "Which ocean is the largest?", "What do bees make?"]
BUILD_LANDED = importlib.util.find_spec("dpo_tui.core.eval.build") is not None
TERMINAL = {"done", "failed", "stopped", "crashed"}


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def _start(run: Run, prompts: Path, **kw) -> Path:
    settings = {"samples": 1, "max_new_tokens": 24, "batch_size": 2, **kw}
    return start_eval(plan_eval(run.path.parent, [run.id], prompts=str(prompts), device="cpu", **settings))


def _wait_first_chunk(job: Path, timeout: float = 180) -> None:
    """Until the worker reports its first finished chunk of prompts (the event a stop must interrupt)."""
    tail = ProgressTail(job)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in tail.new_events():
            if event.get("type") == "progress" and event.get("stage") == "prompts":
                return
        assert read_eval_job(job).state in {"starting", "running"}, (job / "worker.log").read_text(errors="replace")
        time.sleep(0.02)
    raise AssertionError("no prompts progress")


def _answer_keys(job: Path) -> Counter:
    """(section, index) of every line in answers.jsonl; every line must be whole JSON."""
    lines = (job / ANSWERS_FILE).read_text().splitlines()
    return Counter((json.loads(line)["section"], json.loads(line)["index"]) for line in lines)


def _assert_finished(job: Path) -> None:
    """Every item answered once; done once the report builder is in the tree."""
    state = wait_eval_state(job, TERMINAL - {"stopped"})
    keys = _answer_keys(job)
    assert keys == Counter({("prompts", i): 1 for i in range(len(PROMPTS))}), keys
    if BUILD_LANDED:
        assert state == "done", read_status(job)


@pytest.fixture(scope="module")
def judged_job(trained_run: Run, prompts_file: Path) -> Path:
    job = _start(trained_run, prompts_file, judge="shorter")
    wait_eval_state(job, TERMINAL)
    return job


def test_job_answers_base_and_tuned_with_verdicts(judged_job: Path) -> None:
    _assert_finished(judged_job)
    lines = [json.loads(line) for line in (judged_job / ANSWERS_FILE).read_text().splitlines()]
    assert [line["prompt"] for line in lines] == PROMPTS
    for line in lines:
        assert line["base"]["finish"] in {"eos", "length", "stop"}
        assert len(line["base_samples"]) == 1
        tuned = line["targets"]["t0"]
        assert tuned["greedy"]["finish"] in {"eos", "length", "stop"} and len(tuned["samples"]) == 1
        assert tuned["verdict"]["winner"] in {"a", "b", "tie"}, tuned["verdict"]
    events = [json.loads(line) for line in (judged_job / "progress.jsonl").read_text().splitlines()]
    done = [e for e in events if e["type"] == "progress" and e["stage"] == "prompts"]
    assert done[-1]["done"] == done[-1]["total"] == len(PROMPTS)


def test_job_writes_the_report(judged_job: Path, trained_run: Run) -> None:
    from dpo_tui.core.eval.report import read_report

    status = read_status(judged_job) or {}
    assert status.get("state") == "done", status
    path = Path(status["reports"][trained_run.id])
    assert path.parent == trained_run.path / "eval"
    report = read_report(path)
    assert report.run_id == trained_run.id and report.settings.prompts == len(PROMPTS)
    assert report.judge is not None and report.judge.n == len(PROMPTS)
    out = run_cli_inprocess("runs", "--json", "--runs-dir", str(trained_run.path.parent))
    listed = {r["id"]: r for r in json.loads(out.stdout)}
    assert listed[trained_run.id]["eval"]["eval_id"] == report.id


def test_sigterm_stops_then_resume_finishes_once(trained_run: Run, prompts_file: Path) -> None:
    job = _start(trained_run, prompts_file, batch_size=1)
    _wait_first_chunk(job)
    assert stop_job(job, wait_s=120) == "stopped"
    assert 1 <= sum(_answer_keys(job).values()) < len(PROMPTS)
    resume_eval(job)
    _assert_finished(job)


def test_sigkill_then_resume_finishes_once(trained_run: Run, prompts_file: Path) -> None:
    job = _start(trained_run, prompts_file, batch_size=1)
    _wait_first_chunk(job)
    pid = (read_status(job) or {})["pid"]
    os.killpg(pid, signal.SIGKILL)
    assert wait_eval_state(job, {"crashed"}, timeout=30) == "crashed"
    resume_eval(job)
    _assert_finished(job)


def test_cli_refusals(trained_run: Run, prompts_file: Path, tmp_path: Path) -> None:
    root = str(trained_run.path.parent)
    before = sorted((trained_run.path.parent / ".eval").glob("*"))
    out = run_cli_inprocess("eval", "no-such-run", "--runs-dir", root, "--prompts", str(prompts_file))
    assert out.returncode == 2 and "no-such-run" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": 3}\n\nnot json\n')
    out = run_cli_inprocess("eval", trained_run.id, "--runs-dir", root, "--prompts", str(bad))
    assert out.returncode == 2 and f"{bad}:2" in out.stderr and f"{bad}:4" in out.stderr, out.stderr
    out = run_cli_inprocess("eval", trained_run.id, "--runs-dir", root, "--prompts", str(prompts_file), "--judge", "loudest")
    assert out.returncode == 2 and "Bad --judge" in out.stderr, out.stderr
    out = run_cli_inprocess("eval", trained_run.id, "--runs-dir", root, "--prompts", str(prompts_file), "--samples", "-1")
    assert out.returncode == 2 and "--samples" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert sorted((trained_run.path.parent / ".eval").glob("*")) == before  # a refusal starts nothing
