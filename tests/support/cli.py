"""Driving ``dpo-tui`` the way an operator does: the installed command, in-process ``cli.main``, and polling
a real run (through the core, which reconciles dead processes) until it reaches a state or a step."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE_MODEL = REPO / "sample_data" / "tiny-chat"
SAMPLE_PREFS = REPO / "sample_data" / "prefs" / "train.jsonl"


def dpo_tui_cmd() -> list[str]:
    """The installed `dpo-tui` of this interpreter's environment (falls back to `python -m dpo_tui`)."""
    script = Path(sys.executable).with_name("dpo-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dpo_tui"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = False,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*dpo_tui_cmd(), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          stdin=subprocess.DEVNULL, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"dpo-tui {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def _patched_env(env: dict[str, str] | None) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _text_stream() -> io.TextIOWrapper:
    # A real text layer over bytes: commands that write to ``sys.stdout.buffer`` work as in a terminal.
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace", write_through=True)


def _drain(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)  # _text_stream made it
    return buffer.getvalue().decode("utf-8", errors="replace")


def run_cli_inprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``dpo_tui.cli.main(argv)`` in this process, with the exit code and both streams captured.

    Same contract as :func:`run_cli` (a CompletedProcess) without an interpreter start per call. An
    uncaught exception reaches the captured stderr as a traceback, so the no-traceback checks still see it.
    """
    import traceback

    from dpo_tui.cli import main

    out, err = _text_stream(), _text_stream()
    stdin = sys.stdin
    with _patched_env(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.stdin = io.StringIO("")
        try:
            code: int | str | None = main(list(args))
        except SystemExit as exc:  # argparse refuses with exit 2
            code = exc.code
        except BaseException:  # noqa: BLE001 - what an operator would see as a traceback
            err.write(traceback.format_exc())
            code = 1
        finally:
            sys.stdin = stdin
    if isinstance(code, str):
        err.write(code + "\n")
        code = 1
    return subprocess.CompletedProcess(["dpo-tui", *args], int(code or 0), _drain(out), _drain(err))


def wait_for_state(run_path: Path, states: set[str], timeout: float = 300) -> dict:
    """Poll a run's status until it reaches one of ``states`` (AssertionError with the trainer log otherwise)."""
    from dpo_tui.core.runs import Run

    run = Run(run_path)
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = run.status()
        if status.state in states:
            return status.model_dump()
        time.sleep(0.25)
    log = (run_path / "trainer.log").read_text(errors="replace")[-3000:] if (run_path / "trainer.log").exists() else ""
    raise AssertionError(f"run {run_path.name} did not reach {states} in {timeout}s (last: {status})\n{log}")


def wait_for_step(run_path: Path, step: int, timeout: float = 300) -> None:
    from dpo_tui.core.events import read_events

    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e.get("type") == "log" and (e.get("step") or 0) >= step for e in read_events(run_path / "events.jsonl")):
            return
        time.sleep(0.1)
    raise AssertionError(f"run {run_path.name} did not reach step {step}")


def start_run(runs_root: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    proc = run_cli("train", "--runs-dir", str(runs_root), *args, env=env, check=True)
    run_id = proc.stdout.strip().splitlines()[0]
    return runs_root / run_id


def log_steps(run_path: Path) -> list[int]:
    """Logged steps after folding resumed attempts (what a monitor shows)."""
    from dpo_tui.core.events import RunHistory, read_events

    history = RunHistory()
    history.apply(read_events(run_path / "events.jsonl"))
    return [step for step, _ in history.series.get("loss", [])]


def wait_until(predicate: Callable[[], object], timeout: float = 120, what: str = "condition") -> None:
    """Poll ``predicate`` (a cheap check of a file or process) until it holds; AssertionError naming ``what``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_eval_state(job: Path, states: set[str], timeout: float = 180) -> str:
    """Poll an evaluation job folder until its state is one of ``states``; the worker log's tail on timeout."""
    from dpo_tui.core.eval.jobs import read_eval_job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_eval_job(job).state
        if state in states:
            return state
        time.sleep(0.05)
    log = (job / "worker.log").read_text(errors="replace")[-3000:] if (job / "worker.log").exists() else ""
    raise AssertionError(f"job {job} still {read_eval_job(job).state} after {timeout}s\n{log}")
