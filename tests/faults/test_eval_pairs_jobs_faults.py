"""Faults around evaluation and pair-making jobs that need a real worker process: a damaged answer log on
resume, two starts of one job at once, a judge that is not there, a run deleted under a planned job, a full
or read-only ``--out``, and prompts files that are no files.

Each case records its outcome (suites "eval" and "pairs") for ``scripts/reliability_report.py``. The eval
jobs answer three prompts with ``--samples 0 --max-new-tokens 8`` on the session's trained sample run, so
each takes seconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dpo_tui.core.eval.jobs import ANSWERS_FILE, plan_eval, start_eval
from dpo_tui.core.job_folder import LOCK_FILE, ProgressTail, read_status, write_status
from dpo_tui.core.runs import Run
from tests.support.cli import run_cli_inprocess, wait_eval_state
from tests.support.mounts import tmpfs
from tests.support.reliability import record_outcome

PROMPTS = ["What is the capital of Norway?", "Name a primary colour.", "What do bees make?"]
TERMINAL = {"done", "failed", "stopped", "crashed"}
FAST = {"samples": 0, "max_new_tokens": 8, "batch_size": 4, "device": "cpu"}


def assert_clean(proc, code: int | None = None) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "internal error" not in out.lower(), out
    if code is not None:
        assert proc.returncode == code, f"exit {proc.returncode}\n{out}"
    return out


def prompt_keys(job: Path) -> Counter:
    """How often each prompt index appears among the answer log's readable lines."""
    keys: Counter = Counter()
    for raw in (job / ANSWERS_FILE).read_bytes().split(b"\n"):
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(line, dict) and line.get("section") == "prompts":
            keys[line["index"]] += 1
    return keys


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval-faults") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def done_job(trained_run: Run, prompts_file: Path) -> Path:
    """One finished evaluation job the damage cases below set back to ``failed`` and resume."""
    job = start_eval(plan_eval(trained_run.path.parent, [trained_run.id], prompts=str(prompts_file), **FAST))
    assert wait_eval_state(job, TERMINAL) == "done", read_status(job)
    return job


def wait_worker_gone(job: Path, timeout: float = 60) -> None:
    """Until no worker holds the job's lock (a worker records its end state a moment before it exits)."""
    deadline = time.monotonic() + timeout
    fd = os.open(job / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "the worker never exited"
                time.sleep(0.05)
    finally:
        os.close(fd)


def make_failed(job: Path, answers: bytes) -> None:
    wait_worker_gone(job)
    write_status(job, state="failed", error="set by the test", pid=None)
    path = job / ANSWERS_FILE
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.write_bytes(answers)


# --- eval: a damaged answer log on resume ----------------------------------------------------------------
def _damage(path: Path, case: str) -> None:
    path.unlink()
    if case == "dev-zero":
        path.symlink_to("/dev/zero")
    elif case == "folder":
        path.mkdir()
        (path / "keep").write_text("mine")
    elif case == "sparse-1gb":
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)


@pytest.mark.parametrize("case", ["dev-zero", "folder", "sparse-1gb"])
def test_eval_resume_refuses_an_answer_log_that_is_no_file(done_job: Path, case: str) -> None:
    good = (done_job / ANSWERS_FILE).read_bytes()
    make_failed(done_job, good)
    _damage(done_job / ANSWERS_FILE, case)
    try:
        start = time.monotonic()
        proc = run_cli_inprocess("eval", "--runs-dir", str(done_job.parents[1]), "--resume", done_job.name, "--detach")
        out = assert_clean(proc, 2)
        assert time.monotonic() - start < 30
        assert ANSWERS_FILE in out and "move it aside" in out, out
        assert read_status(done_job)["state"] == "failed"  # nothing launched
    finally:
        make_failed(done_job, good)
    record_outcome("eval", f"resume/answers-{case}", "rejected")


def test_eval_resume_skips_a_deeply_nested_answer_line(done_job: Path) -> None:
    make_failed(done_job, b"[" * 100_000 + b"\n")
    proc = run_cli_inprocess("eval", "--runs-dir", str(done_job.parents[1]), "--resume", done_job.name, "--detach")
    assert_clean(proc, 0)
    assert wait_eval_state(done_job, TERMINAL) == "done", read_status(done_job)
    assert prompt_keys(done_job) == Counter({0: 1, 1: 1, 2: 1})
    assert "Traceback" not in (done_job / "worker.log").read_text(errors="replace")
    record_outcome("eval", "resume/answers-deep-nesting", "survived")


# --- eval: two resumes at once ---------------------------------------------------------------------------
def test_eval_resume_refuses_while_a_worker_holds_the_job_lock(done_job: Path) -> None:
    make_failed(done_job, (done_job / ANSWERS_FILE).read_bytes())
    fd = os.open(done_job / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a worker whose status.json says failed but still lives
        proc = run_cli_inprocess("eval", "--runs-dir", str(done_job.parents[1]), "--resume", done_job.name, "--detach")
        assert "already running" in assert_clean(proc, 2)
        assert read_status(done_job)["state"] == "failed"
    finally:
        os.close(fd)
    record_outcome("eval", "resume/lock-held", "rejected")


def test_two_eval_resumes_at_once_run_one_worker(done_job: Path) -> None:
    make_failed(done_job, (done_job / ANSWERS_FILE).read_bytes())
    tail = ProgressTail(done_job)
    list(tail.new_events())  # only this attempt's events count
    cmd = [sys.executable, "-m", "dpo_tui", "eval", "--runs-dir", str(done_job.parents[1]), "--resume", done_job.name,
           "--detach"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _o, _e in results)
    assert codes == [0, 2], results
    refused = next(o + e for rc, o, e in results if rc == 2)
    # Refused while the first worker runs; once it has ended (within the exit grace), as already done.
    assert any(why in refused for why in ("already running", "still starting", "still running", "already done")), refused
    assert "Traceback" not in refused
    assert wait_eval_state(done_job, TERMINAL) == "done"
    wait_worker_gone(done_job)
    events = list(tail.new_events())
    assert sum(e.get("type") == "done" for e in events) == 1, events
    record_outcome("eval", "resume/two-at-once", "rejected")


# --- eval: a judge that is not there, a run deleted under a planned job ------------------------------------
def test_eval_with_an_unreachable_judge_ends_done_with_no_verdicts(trained_run: Run, prompts_file: Path) -> None:
    judge = "url=http://127.0.0.1:1,model=x,retries=0,timeout=1"
    job = start_eval(plan_eval(trained_run.path.parent, [trained_run.id], prompts=str(prompts_file), judge=judge, **FAST))
    assert wait_eval_state(job, TERMINAL) == "done", read_status(job)
    report = json.loads(Path(read_status(job)["reports"][trained_run.id]).read_text())
    judge_section = report["judge"]
    assert judge_section["no_verdict"] == len(PROMPTS) and judge_section["win_rate"] is None, judge_section
    events = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]
    assert any(e.get("type") == "warning" and "no verdict" in e.get("message", "") for e in events), events
    assert "Traceback" not in (job / "worker.log").read_text(errors="replace")
    record_outcome("eval", "judge/refused-port", "survived")


def test_eval_run_deleted_between_plan_and_start_fails_naming_the_adapter(trained_run: Run, prompts_file: Path,
                                                                         tmp_path: Path) -> None:
    root = tmp_path / "runs"
    copy = root / trained_run.id
    shutil.copytree(trained_run.path, copy, ignore=shutil.ignore_patterns("exports", "eval", "checkpoint-*"))
    plan = plan_eval(root, [trained_run.id], prompts=str(prompts_file), **FAST)
    shutil.rmtree(copy)
    job = start_eval(plan)
    assert wait_eval_state(job, TERMINAL) == "failed", read_status(job)
    error = read_status(job)["error"]
    assert "adapter" in error.lower() and str(copy) in error, error
    log = (job / "worker.log").read_text(errors="replace")
    assert log.count("Traceback") == 0, log
    record_outcome("eval", "start/run-deleted-after-plan", "rejected")


# --- prompts files that are no files -----------------------------------------------------------------------
def _no_file(tmp_path: Path, case: str) -> Path:
    if case == "dev-zero":
        path = tmp_path / "zero.txt"
        path.symlink_to("/dev/zero")
    elif case == "fifo":
        path = tmp_path / "fifo.txt"
        os.mkfifo(path)
    else:
        path = tmp_path / "sparse.txt"
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)
    return path


def _run_with_deadline(*args: str, timeout: float = 60):
    """The in-process CLI on a thread, so a blocking read fails the test instead of hanging it."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(run_cli_inprocess(*args)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert box, f"`dpo-tui {' '.join(args)}` still running after {timeout}s"
    return box[0]


@pytest.mark.parametrize("case", ["dev-zero", "fifo", "sparse-1gb"])
def test_eval_and_pairs_generate_refuse_a_prompts_file_that_is_no_file(trained_run: Run, tmp_path: Path,
                                                                      case: str) -> None:
    path = _no_file(tmp_path, case)
    shown = {str(path), str(path.resolve())}
    proc = _run_with_deadline("eval", "--runs-dir", str(trained_run.path.parent), trained_run.id, "--prompts", str(path),
                              "--samples", "0", "--max-new-tokens", "8", "--detach")
    out = assert_clean(proc, 2)
    assert any(s in out for s in shown), out
    proc = _run_with_deadline("pairs", "generate", "--model", "sample", "--prompts", str(path), "--out",
                              str(tmp_path / "out"), "--detach")
    out = assert_clean(proc, 2)
    assert any(s in out for s in shown), out
    assert not (tmp_path / "out").exists()
    record_outcome("eval", f"prompts/{case}", "rejected")
    record_outcome("pairs", f"prompts/{case}", "rejected")


# --- pairs generate: two at once, a read-only and a full --out ------------------------------------------------
def _prompts(path: Path, count: int, words: int = 3) -> Path:
    path.write_text("".join(f"Tell me about item {i}. " + "more " * words + "\n" for i in range(count)))
    return path


@pytest.mark.ml
@pytest.mark.slow  # two real generate workers race for the folder
def test_two_pairs_generate_into_one_out_at_once_run_one_worker(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.txt", 3)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dpo_tui", "pairs", "generate", "--model", "sample", "--prompts", str(prompts), "--n", "2",
           "--max-new-tokens", "8", "--out", str(out), "--detach"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _o, _e in results) == [0, 2], results
    refused = next(o + e for rc, o, e in results if rc == 2)
    # Refused while the first worker runs; once it has ended (within the exit grace), as already done.
    assert ("already running" in refused or "already done" in refused) and "Traceback" not in refused, refused
    deadline = time.monotonic() + 180
    while (read_status(out) or {}).get("state") not in {"done", "failed", "stopped"}:
        assert time.monotonic() < deadline, read_status(out)
        time.sleep(0.05)
    assert read_status(out)["state"] == "done", read_status(out)
    indices = [json.loads(line)["index"] for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert sorted(indices) == [0, 1, 2]
    record_outcome("pairs", "generate/two-at-once", "rejected")


def test_pairs_generate_onto_a_read_only_out_is_refused_before_starting(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.txt", 3)
    where = tmp_path / "ro"
    with tmpfs(where, "64m"):  # room for the plan's space estimate: the refusal must be about writing
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        proc = run_cli_inprocess("pairs", "generate", "--model", "sample", "--prompts", str(prompts), "--n", "2",
                                 "--max-new-tokens", "8", "--out", str(where / "job"), "--detach")
        out = assert_clean(proc, 2)
        assert "read-only" in out.lower(), out
        assert list(where.iterdir()) == []
    record_outcome("pairs", "generate/read-only-out", "rejected")


def _wait_pairs(out: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while (read_status(out) or {}).get("state") not in {"done", "failed", "stopped"}:
        assert time.monotonic() < deadline, read_status(out)
        time.sleep(0.05)
    wait_worker_gone(out)
    return read_status(out)["state"]


@pytest.mark.ml
@pytest.mark.slow  # a real generate worker loads the sample model twice
def test_pairs_generate_on_a_full_disk_fails_cleanly_and_resumes(tmp_path: Path) -> None:
    from dpo_tui.core.pairs.plan import plan_pairs, start_pairs

    prompts = _prompts(tmp_path / "p.txt", 3, words=400)  # ~2 KB a prompt (stored twice): a line spans pages
    where = tmp_path / "full"
    with tmpfs(where, "64m"):  # room for the plan's space estimate, filled after planning
        plan = plan_pairs(model="sample", prompts=prompts, out=where / "job", n=2, max_new_tokens=8, batch_size=2)
        filler = where / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk, then give back room for small files and a line
        try:
            with pytest.raises(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - (64 + 7) * 4096))  # the worker's reserve, then room
        start_pairs(plan)
        out = where / "job"
        assert _wait_pairs(out) == "failed", read_status(out)
        error = read_status(out)["error"]
        assert "full" in error.lower() and "internal error" not in error.lower(), error
        lines = (out / "candidates.jsonl").read_bytes().splitlines() if (out / "candidates.jsonl").exists() else []
        assert len(lines) < 3
        made = [json.loads(line)["index"] for line in lines]  # every line whole JSON
        filler.unlink()
        proc = run_cli_inprocess("pairs", "resume", str(out))
        assert_clean(proc, 0)
        assert _wait_pairs(out) == "done", read_status(out)
        indices = [json.loads(line)["index"] for line in (out / "candidates.jsonl").read_text().splitlines()]
        assert sorted(indices) == [0, 1, 2] and indices[: len(made)] == made
    record_outcome("pairs", "generate/full-disk-then-resume", "survived")
