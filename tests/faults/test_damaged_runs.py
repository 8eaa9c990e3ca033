"""A damaged or hostile run folder is shown as damaged, never contagious (issue 14, items 3, 5, 6, 8, 11, 12,
19, 20, 27, 28, 29, and the further run-folder states found by trying them).

Every case puts one bad folder (or one bad file in a folder) beside a healthy finished run and checks:
``runs`` and ``runs --json`` succeed (the JSON is strict: no NaN/Infinity), the healthy run is listed with its
loss, the bad one is listed (``unreadable`` with the reason) or tolerated, nothing reaches "internal error",
and a damaged run that nothing runs can be deleted. Refusals run in-process; processes and signals are real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.core import runs
from dpo_tui.core.config import RunConfig
from dpo_tui.core.errors import UserError
from tests.support.cli import run_cli, run_cli_inprocess, start_run, wait_for_state, wait_for_step
from tests.support.reliability import record_outcome

SUITE = "bad-input"
CATEGORY = "run-folder"
HEALTHY = "20250101-000000-healthy-b0.1"
BAD = "20250102-000000-bad-b0.1"
ESC = "\x1b"


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"runs --json printed {name}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def _log_line(step: int, **metrics: Any) -> str:
    return json.dumps({"v": 1, "seq": step, "t": 1_700_000_000.0 + step, "attempt": 1, "type": "log", "step": step,
                       "metrics": {"loss": 0.5, **metrics}}, allow_nan=True) + "\n"


def _make_run(root: Path, run_id: str, state: str = "finished", events: str = "") -> runs.Run:
    run = runs.create_run(root, RunConfig(), run_id=run_id)
    run.write_status(runs.RunStatus(state=state, created_at=1_700_000_000.0, host="elsewhere", step=2, max_steps=2))
    run.events_path.write_text(events or _log_line(1) + _log_line(2, loss=0.25))
    return run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _make_run(root, HEALTHY)
    return root


def _assert_listed(root: Path, case: str, bad_state: str | None = "unreadable", reason: str = "") -> dict[str, Any]:
    """`runs` and `runs --json` succeed, list the healthy run with its loss and the bad one; returns the bad row."""
    plain = run_cli_inprocess("runs", "--runs-dir", str(root))
    assert plain.returncode == 0, plain.stderr
    out = plain.stdout + plain.stderr
    assert "internal error" not in out and "Traceback" not in out and ESC not in out, out
    assert HEALTHY in plain.stdout and "0.250" in plain.stdout, plain.stdout
    proc = run_cli_inprocess("runs", "--runs-dir", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["id"]: row for row in _strict_json(proc.stdout)}
    assert rows[HEALTHY]["state"] == "finished" and rows[HEALTHY]["loss"] == 0.25
    bad = next(row for rid, row in rows.items() if rid != HEALTHY)
    if bad_state is not None:
        assert bad["state"] == bad_state, bad
    if reason:
        assert reason in (bad["error"] or ""), bad
        assert reason in plain.stdout, plain.stdout
    record_outcome(SUITE, f"run-folder/{case}", "listed", category=CATEGORY, state=bad["state"])
    return bad


def _deletable(root: Path, run_id: str = BAD) -> None:
    proc = run_cli_inprocess("delete", "--runs-dir", str(root), run_id, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert not (root / run_id).exists() and not [p for p in root.iterdir() if p.name.startswith(".deleting-")]


# --- items 6, 8, 27 and unlisted: one bad status.json or config.json ------------------------------------
def _status(**fields: Any) -> Callable[[runs.Run], None]:
    def write(run: runs.Run) -> None:
        run.status_path.write_text(json.dumps({"state": "running", "host": runs.host_name(), "created_at": 1.0, **fields}, allow_nan=True))
    return write


def _raw(name: str, text: str) -> Callable[[runs.Run], None]:
    return lambda run: (run.path / name).write_text(text)


def _folder(name: str) -> Callable[[runs.Run], None]:
    def make(run: runs.Run) -> None:
        (run.path / name).unlink()
        (run.path / name).mkdir()
    return make


def _fifo(name: str) -> Callable[[runs.Run], None]:
    def make(run: runs.Run) -> None:
        (run.path / name).unlink()
        os.mkfifo(run.path / name)
    return make


STATUS_CASES: list[tuple[str, Callable[[runs.Run], None], str]] = [
    ("pid-negative", _status(pid=-5), "pid"),  # item 6: `runs` internal error, run undeletable
    ("pid-string", _status(pid="12"), "pid"),
    ("pid-true", _status(pid=True), "pid"),
    ("pid-huge", _status(pid=2**40), "pid"),
    ("created-at-infinity", _raw("status.json", '{"state": "finished", "created_at": Infinity}'), "Infinity"),  # item 6
    ("created-at-1e999", _raw("status.json", '{"state": "finished", "created_at": 1e999}'), "out of range"),
    ("started-at-1e20", _status(state="finished", started_at=1e20), "started_at"),  # item 28: localtime overflow
    ("step-negative", _status(state="finished", step=-1), "step"),
    ("step-1e18", _status(state="finished", step=10**18), "step"),
    ("extra-field-nan", _raw("status.json", '{"state": "finished", "note": NaN}'), "NaN"),
    ("status-empty", _raw("status.json", ""), "status.json is unreadable"),
    ("status-array", _raw("status.json", "[1, 2]"), "not an object"),
    ("status-nested-5000", _raw("status.json", "[" * 5000 + "]" * 5000), "status.json is unreadable"),
    ("status-not-utf8", lambda run: run.status_path.write_bytes(b'{"state": "\xff"}'), "status.json is unreadable"),
    ("status-is-folder", _folder("status.json"), "folder"),  # item 27
    ("status-is-fifo", _fifo("status.json"), "not a regular file"),
    ("status-5mb", _raw("status.json", '{"state": "finished", "x": "' + "a" * (5 << 20) + '"}'), "bytes"),
    ("config-is-folder", _folder("config.json"), "folder"),  # item 27
    ("config-array", _raw("config.json", "[1, 2]"), "not an object"),  # unlisted
    ("config-beta-infinity", _raw("config.json", '{"beta": Infinity}'), "Infinity"),
    ("config-empty", _raw("config.json", ""), "config.json is unreadable"),
]


@pytest.mark.parametrize(("case", "damage", "reason"), STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_a_damaged_file_is_listed_never_contagious(case: str, damage: Callable[[runs.Run], None], reason: str, root: Path) -> None:
    damage(_make_run(root, BAD))
    _assert_listed(root, case, "unreadable", reason)
    _deletable(root)


def test_max_steps_zero_and_odd_numbers_are_tolerated(root: Path) -> None:
    run = _make_run(root, BAD)
    _status(state="finished", max_steps=0, exit_code=-(2**70))(run)
    _assert_listed(root, "max-steps-zero", bad_state=None)


def test_a_pid_without_its_start_time_is_never_signalled(root: Path) -> None:
    """Item 6: `stop` trusted a bare pid and signalled whatever process group now holds it."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        run = _make_run(root, BAD)
        run.write_status(runs.RunStatus(state="running", host=runs.host_name(), pid=victim.pid, created_at=time.time()))
        proc = run_cli_inprocess("stop", "--runs-dir", str(root), BAD, "--wait", "0")
        assert "internal error" not in proc.stderr
        with pytest.raises(subprocess.TimeoutExpired):  # a SIGTERM, had one been sent, ends it at once
            victim.wait(timeout=1.0)
        record_outcome(SUITE, "run-folder/pid-without-start-time", "refused", category=CATEGORY)
    finally:
        victim.kill()
        victim.wait()


def test_a_future_created_at_is_not_queued_forever(root: Path) -> None:
    """Item 8: a never-launched run created 'in the future' stayed queued until the clock caught up."""
    run = _make_run(root, BAD)
    run.write_status(runs.RunStatus(state="queued", created_at=time.time() + 86400 * 365, host=runs.host_name()))
    assert run.status().state == "crashed"
    (run.status_path).unlink()
    os.utime(run.path, (time.time() + 86400 * 365,) * 2)  # no status.json: the folder's mtime is its age
    assert run.status(reconcile=False).state in {"crashed", "queued"}
    record_outcome(SUITE, "run-folder/created-in-the-future", "recovered", category=CATEGORY)


# --- item 27: another user's run folder in a shared root -------------------------------------------
def test_another_users_private_run_folder(tmp_path: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="dpo-shared-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        root = shared / "runs"
        _make_run(root, HEALTHY)
        root.chmod(0o777)
        for p in root.rglob("*"):
            p.chmod(0o777 if p.is_dir() else 0o666)
        private = _make_run(root, BAD)
        private.path.chmod(0o700)  # root's folder: the user below cannot look inside
        env = {**os.environ, "HOME": str(shared), "DPO_TUI_HOME": str(shared)}
        env.pop("DPO_TUI_RELIABILITY_REPORT", None)
        try:
            proc = subprocess.run([sys.executable, "-m", "dpo_tui", "runs", "--runs-dir", str(root)], capture_output=True, text=True,
                                  timeout=120, env=env, cwd="/", preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
        except PermissionError as exc:
            pytest.skip(f"the unprivileged user cannot run this interpreter: {exc}")
        if "ModuleNotFoundError" in proc.stderr or "Permission denied" in proc.stderr and HEALTHY not in proc.stdout:
            pytest.skip(f"the unprivileged user cannot run this checkout: {proc.stderr[-200:]}")
        assert proc.returncode == 0, proc.stderr
        assert "internal error" not in proc.stderr and HEALTHY in proc.stdout
        assert BAD in proc.stdout and "permission denied" in proc.stdout, proc.stdout
        record_outcome(SUITE, "run-folder/another-users-folder", "listed", category=CATEGORY)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_folder_that_cannot_be_looked_into_is_listed(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 27 where the test runs as root (which may look into every folder): every lookup inside one run
    folder is refused with EACCES, as the kernel does for another user's 0700 folder."""
    private = _make_run(root, BAD)
    inside = str(private.path) + os.sep

    def denying(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path).startswith(inside):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        return call

    for name in ("lstat", "open"):
        monkeypatch.setattr(os, name, denying(getattr(os, name)))
    assert runs.is_run_dir(private.path)
    rows = {s.id: s for s in runs.list_runs(root, reconcile=False)}
    assert rows[HEALTHY].state == "finished" and rows[BAD].state == "unreadable"
    assert "permission denied" in (rows[BAD].error or ""), rows[BAD].error


# --- items 28, 29, 20: the event log ---------------------------------------------------------------
def test_a_string_metric_and_1e999_loss_are_not_contagious(root: Path) -> None:
    run = _make_run(root, BAD, events=_log_line(1) + _log_line(2, **{"rewards/margins": "x"}).replace("0.5", "1e999"))
    bad = _assert_listed(root, "event-string-metric-and-1e999", bad_state="finished")
    assert bad["loss"] is None and bad["margin"] is None
    from dpo_tui.core.events import RunHistory, read_events

    history = RunHistory()
    history.apply(read_events(run.events_path))
    # The 1e999 line is either dropped (orjson refuses it) or charted as a gap; the string never charted.
    assert history.latest("loss") in (None, 0.5) and "rewards/margins" not in history.series


def test_hostile_event_fields_fold_without_error(root: Path) -> None:
    from dpo_tui.core.events import RunHistory, read_events

    run = _make_run(root, BAD)
    lines = [
        {"type": "started", "t": 1e20, "attempt": "x", "max_steps": -3, "pid": "abc", "pid_start": "x"},
        {"type": "log", "t": "soon", "step": 10**19, "metrics": {"loss": 0.1}},
        {"type": "log", "t": 1.0, "step": 1, "metrics": ["not", "a", "dict"]},
        {"type": "resumed", "step": "x"},
        {"type": "eval", "step": 1, "metrics": {"loss": "x", "acc": 0.5}},
    ]
    run.events_path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    run.status_path.unlink()  # status rebuilt from this log: its pids must validate
    history = RunHistory()
    history.apply(read_events(run.events_path))
    assert history.step == 0 and history.first_t == 1.0 and history.eval_series == {"acc": [(1, 0.5)]}
    status = run.status(reconcile=False)
    assert status.pid is None
    _assert_listed(root, "hostile-event-fields", bad_state=None)


def test_events_fifo_does_not_hang_runs(root: Path) -> None:
    """Item 29: a FIFO events.jsonl made `runs` block in open() for good."""
    _fifo("events.jsonl")(_make_run(root, BAD))
    proc = run_cli("runs", "--runs-dir", str(root), timeout=60)
    assert proc.returncode == 0 and HEALTHY in proc.stdout and BAD in proc.stdout
    _assert_listed(root, "events-fifo", bad_state="finished")
    _deletable(root)


def test_garbage_line_over_64k_keeps_the_final_loss(root: Path) -> None:
    """Item 20: the listing read only the last 64 KB, so one long garbage line hid a finished run's loss."""
    _make_run(root, BAD, events=_log_line(1) + _log_line(2, loss=0.125) + "x" * 200_000 + "\n")
    bad = _assert_listed(root, "events-long-garbage-tail", bad_state="finished")
    assert bad["loss"] == 0.125


def test_a_200mb_line_is_skipped_quickly(root: Path) -> None:
    run = _make_run(root, BAD)
    with open(run.events_path, "ab") as fh:
        fh.truncate(200 << 20)  # 200 MB of NUL, no newline: one endless line (sparse, so cheap to make)
    started = time.perf_counter()
    bad = _assert_listed(root, "events-200mb-line", bad_state="finished")
    assert time.perf_counter() - started < 10 and bad["loss"] is None
    reader = __import__("dpo_tui.core.events", fromlist=["EventReader"]).EventReader(run.events_path)
    while reader.read_new(max_bytes=8 << 20):
        pass
    assert len(reader._partial) <= 1 << 20  # never buffers the whole line


def test_immutable_event_log_names_the_file(tmp_path: Path) -> None:
    """Item 29: an immutable (chattr +i) events.jsonl failed the run as a bare `PermissionError`."""
    from dpo_tui.core.events import EventWriter

    path = tmp_path / "events.jsonl"
    path.write_text("")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not available here: {made.stderr.strip() or made.returncode}")
    try:
        with pytest.raises(OSError) as caught:
            EventWriter(path)
        assert "events.jsonl" in str(caught.value) and "event log" in str(caught.value)
        record_outcome(SUITE, "run-folder/immutable-event-log", "failed-clean", category=CATEGORY)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


# --- item 3: the monitor on a log it cannot read (Pilot, 80x24) -------------------------------------
async def test_monitor_shows_an_unreadable_event_log_and_keeps_working(tmp_path: Path) -> None:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.monitor import MonitorScreen
    from tests.support.uikit import make_services, screen_text

    root = tmp_path / "runs"
    run = _make_run(root, BAD)
    run.events_path.unlink()
    run.events_path.mkdir()
    app = DpoTuiApp(make_services(root), initial_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_monitor(BAD)
        for _ in range(200):
            await pilot.pause(0.02)
            screen = app.screen
            if isinstance(screen, MonitorScreen) and screen.loaded and screen.snapshot is not None:
                break
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, MonitorScreen) and app.is_running
        assert "events.jsonl" in screen_text(app) and "folder" in screen_text(app)
        screen._tick()  # a poll after the failure must not raise either
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.is_running
    record_outcome(SUITE, "run-folder/monitor-unreadable-events", "tolerated", category=CATEGORY)


# --- item 5: delete never removes what may be alive ---------------------------------------------------
def test_delete_refuses_a_live_run_with_garbled_status(runs_root: Path, sample_model: Path) -> None:
    path = start_run(runs_root, "--max-steps", "200", env={"DPO_TUI_FAULT_STEP_DELAY": "0.5"})
    try:
        wait_for_step(path, 1, timeout=300)
        saved = (path / "status.json").read_text()
        (path / "status.json").write_text('{"state": "runn')
        proc = run_cli_inprocess("delete", "--runs-dir", str(runs_root), path.name, "--yes")
        assert proc.returncode == 2 and "may still be running" in proc.stderr, proc.stderr
        assert (path / "config.json").exists() and (path / "events.jsonl").exists()
        record_outcome(SUITE, "run-folder/delete-live-run-garbled-status", "refused", category=CATEGORY)
        with contextlib.suppress(OSError):
            (path / "status.json").write_text(saved)
    finally:
        run_cli("stop", "--runs-dir", str(runs_root), path.name, "--now")
        for pid in runs.Run(path).might_be_alive():
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        wait_for_state(path, {"stopped", "crashed", "failed", "finished"}, timeout=60)


# --- items 11, 12, 19, 20: references and deletes -----------------------------------------------------
def test_a_relative_run_path_is_made_absolute_once(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root.parent)
    run = runs.find_run(Path("elsewhere"), f"runs/{HEALTHY}")
    assert run.path.is_absolute() and run.path == root / HEALTHY
    record_outcome(SUITE, "run-id/relative-path", "accepted", category="run-id")


@pytest.mark.parametrize("command", [["stop"], ["attach"], ["resume"], ["delete", "--yes"]])
def test_a_run_id_too_long_for_the_filesystem(command: list[str], root: Path) -> None:
    proc = run_cli_inprocess(command[0], "--runs-dir", str(root), "x" * 300, *command[1:])
    assert proc.returncode == 2 and "no run" in proc.stderr.lower() and "internal error" not in proc.stderr, proc.stderr
    record_outcome(SUITE, f"run-id/too-long-{command[0]}", "rejected", category="run-id")


def test_deleting_a_symlinked_run_removes_only_the_link(root: Path, tmp_path: Path) -> None:
    target = _make_run(tmp_path / "outside", "20250103-000000-target-b0.1")
    (root / BAD).symlink_to(target.path)
    _deletable(root)
    assert target.config_path.exists() and target.events_path.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".")] or all(p.name == ".seen.json" for p in root.iterdir() if p.name.startswith("."))
    record_outcome(SUITE, "run-folder/delete-symlinked-run", "accepted", category=CATEGORY)


def test_resume_with_its_dataset_gone_gives_a_hint_resume_can_follow(tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    root = tmp_path / "runs"
    run = runs.create_run(root, RunConfig(dataset=str(data)), run_id=BAD)
    run.write_status(runs.RunStatus(state="stopped", created_at=1.0, host=runs.host_name()))
    folder = run.checkpoints_dir / "checkpoint-2"
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    for name in ("optimizer.pt", "scheduler.pt"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text("{}")
    data.unlink()
    with pytest.raises(UserError) as caught:
        runs.prepare_resume(run)
    text = caught.value.render()
    assert str(data) in text and "--config" in text and ".jsonl/" not in text, text
    record_outcome(SUITE, "run-folder/resume-dataset-gone", "rejected", category=CATEGORY)


# --- unlisted: a name with escapes, a checkpoints file ---------------------------------------------------
@pytest.mark.parametrize("name", ["20250102-evil\x1b[2J\x1b]0;pwned\x07", "20250102-two\nlines", "20250102-bad-\udcff-bytes"])
def test_a_run_folder_name_with_control_characters_is_printed_escaped(name: str, root: Path) -> None:
    try:
        run = _make_run(root, name)
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this filesystem refuses the name: {exc}")
    bad = _assert_listed(root, f"name-{name.split('-')[1]}", bad_state="finished")
    assert bad["id"] == name
    real = run_cli("runs", "--runs-dir", str(root), env={"PYTHONIOENCODING": "utf-8:strict"})  # a terminal's strict stdout
    assert real.returncode == 0 and ESC not in real.stdout and "internal error" not in real.stderr, real.stderr
    from dpo_tui.ui.screens.runs_rows import detail_text, row_cells

    cells = row_cells(runs.summarize(run.path), now=time.time())
    assert ESC not in str(cells[1]) and "\n" not in str(cells[1])
    assert ESC not in detail_text(runs.summarize(run.path), time.time()).plain


def test_a_checkpoints_file_instead_of_a_folder(root: Path) -> None:
    run = _make_run(root, BAD, events=_log_line(1))
    run.write_status(runs.RunStatus(state="stopped", created_at=1.0, host="elsewhere"))
    run.checkpoints_dir.write_text("not a folder")
    _assert_listed(root, "checkpoints-is-a-file", bad_state="stopped")
    proc = run_cli_inprocess("resume", "--runs-dir", str(root), BAD)
    assert proc.returncode == 2 and "no complete checkpoint" in proc.stderr


@pytest.mark.parametrize("kind", ["array", "fifo", "folder"])
def test_a_hostile_seen_file_in_the_root(kind: str, root: Path) -> None:
    """`runs` remembers states in the root's .seen.json: a JSON array there was an internal error, a FIFO a hang."""
    seen = root / ".seen.json"
    if kind == "array":
        seen.write_text("[1, 2]")
    elif kind == "fifo":
        os.mkfifo(seen)
    else:
        seen.mkdir()
    # A FIFO in a subprocess (a hang must end in the timeout, not hang the suite); the rest in-process.
    proc = run_cli("runs", "--runs-dir", str(root), timeout=60) if kind == "fifo" else run_cli_inprocess("runs", "--runs-dir", str(root))
    assert proc.returncode == 0 and HEALTHY in proc.stdout and "internal error" not in proc.stderr, proc.stderr
    record_outcome(SUITE, f"run-folder/seen-file-{kind}", "tolerated", category=CATEGORY)


def test_console_start_survives_a_run_folder_it_may_not_look_into(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's 0700 run folder in a shared root: the console's first read of the root must not raise
    (it decides the first screen), and the folder is kept so the runs screen can show it as unreadable."""
    from dpo_tui.ui.app import has_runs, run_folder_names

    root = tmp_path / "runs"
    private = root / "20250101-000000-someone-else"
    private.mkdir(parents=True)
    real_exists = Path.exists

    def exists(self: Path, *args: object, **kwargs: object) -> bool:
        if self.parent == private:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", exists)
    assert run_folder_names(root) == [private.name]
    assert has_runs(root)
