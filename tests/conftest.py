"""Suite-wide fixtures and tiers.

Tiers are marked here, by rule, so no test has to remember them (see ``pytest_collection_modifyitems``):
``ml`` for anything that loads torch/transformers (a real model or the real worker), ``slow`` for anything
that trains or waits on a real run. ``make test-fast`` runs ``-m "not ml and not slow" --fast-tier``;
in that tier a test whose call phase costs more than ``FAST_TIER_LIMIT_S`` fails, so the tier stays fast.

The one real sample run (``trained_run``) is trained once per test session, shared by all xdist workers
through a file lock in a folder named after the xdist test-run id.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import re
import resource
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

# Two xdist workers on a 2-core box each start torch processes (trainers, chat workers, exports); with
# torch's default of one thread per core they oversubscribe the cores and spin. Two 30-step sample runs
# side by side took 37 s with 2 threads each and 14 s with 1 (this box). Set before anything imports
# torch; an explicit OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.support.cli import REPO, SAMPLE_MODEL, start_run, wait_for_state
from tests.support.reliability import ENV as RELIABILITY_ENV

TESTS = REPO / "tests"
# Folders and modules whose every test runs the real worker (torch, transformers, TRL, PEFT).
ML_PATHS = (TESTS / "worker", TESTS / "ui" / "test_real_run.py")
# Fixtures that hand a test a real model, a real run, or the trained sample run.
ML_FIXTURES = {"trained_run", "sample_model", "tiny_model"}
# Fixtures whose code builds a real model or starts the real worker make every test using them ml.
ML_FIXTURE_CALL = re.compile(r"\b(build_assets|start_run|wait_for_state|_py)\(")
# Calls that start a real run or wait on one: a test whose body makes them trains (slow).
SLOW_CALL = re.compile(r"\b(start_run|wait_for_state|wait_for_step|_train|trained_run)\(|\btrained_run\b")
# Code that imports the ML stack, in the test itself or in a child it starts.
ML_IMPORT = re.compile(r"\bimport (torch|transformers|trl|peft)\b|\bfrom (torch|transformers|trl|peft|datasets)\b[\w.]* import")
FAST_TIER_ENV = "DPO_TUI_FAST_TIER"
# ~3 s of work plus headroom: the Textual tests that walk model → dataset → experiment cost 2.5–3.5 s CPU.
FAST_TIER_LIMIT_S = float(os.environ.get("DPO_TUI_FAST_TIER_LIMIT_S", "4"))
FAST_TIER_WALL_FACTOR = 8
_CALL_CPU = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dpo-tui")
    group.addoption("--fast-tier", action="store_true", default=False,
                    help=f"fail any test whose call phase takes more than {FAST_TIER_LIMIT_S:g} s (also: {FAST_TIER_ENV}=1)")
    group.addoption("--reliability-report", metavar="PATH", default=None,
                    help=f"append fault/bad-input/load outcomes to PATH for scripts/reliability_report.py "
                         f"(also: {RELIABILITY_ENV}=PATH)")


def pytest_configure(config: pytest.Config) -> None:
    report = config.getoption("--reliability-report")
    if report:
        os.environ[RELIABILITY_ENV] = str(Path(report).resolve())


def _source(obj: Callable[..., object] | None) -> str:
    if obj is None:
        return ""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def tier_of(item: pytest.Item) -> set[str]:
    """The automatic tiers of one test (``ml``, ``slow``), from where it lives, its fixtures and its code."""
    tiers: set[str] = set()
    path = Path(str(item.fspath))
    fixtures = set(getattr(item, "fixturenames", ()))
    body = _source(getattr(item, "function", None))
    if SLOW_CALL.search(body) or "trained_run" in fixtures:
        tiers |= {"slow", "ml"}
    in_ml_path = any(path == p or p in path.parents for p in ML_PATHS)
    if in_ml_path or fixtures & ML_FIXTURES or ML_IMPORT.search(body) or any(_fixture_loads_ml(item, n) for n in fixtures):
        tiers.add("ml")
    return tiers


def _fixture_loads_ml(item: pytest.Item, name: str) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
        code = _source(fixturedef.func)
        if ML_FIXTURE_CALL.search(code) or ML_IMPORT.search(code):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(tier_of(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(name)


def _fast_tier(config: pytest.Config) -> bool:
    return bool(config.getoption("--fast-tier")) or os.environ.get(FAST_TIER_ENV, "") not in ("", "0")


def _cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for (the commands a test ran)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    started = _cpu_seconds()
    yield
    item.stash[_CALL_CPU] = _cpu_seconds() - started


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """In the fast tier a passing test fails when its call phase costs more than the limit.

    The cost is CPU time (the test's process and the commands it ran): the 2-core CI box is shared, and
    wall time there swings several-fold with the load while CPU time does not. Wall time still counts,
    at ``FAST_TIER_WALL_FACTOR`` times the limit, so a test that sleeps or waits on a slow child is caught.
    """
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.passed or not _fast_tier(item.config):
        return
    cpu = item.stash.get(_CALL_CPU, 0.0)
    if cpu > FAST_TIER_LIMIT_S or call.duration > FAST_TIER_LIMIT_S * FAST_TIER_WALL_FACTOR:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid}: {cpu:.1f} s CPU, {call.duration:.1f} s wall in the fast tier (limit {FAST_TIER_LIMIT_S:g} s "
                           f"CPU, {FAST_TIER_LIMIT_S * FAST_TIER_WALL_FACTOR:g} s wall): make it faster, or let it be marked "
                           "ml/slow (tests/conftest.py tier_of)")


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def sample_model() -> Path:
    if not (SAMPLE_MODEL / "config.json").exists():
        pytest.fail("sample_data/tiny-chat is missing; run `make sample`")
    return SAMPLE_MODEL


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this test run sees (this session's temp folder without xdist)."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not uid:
        return tmp_path_factory.getbasetemp()
    shared = tmp_path_factory.getbasetemp().parent / f"shared-{uid}"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def session_runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _shared_dir(tmp_path_factory) / "session-runs"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, session_runs_root: Path, sample_model: Path):
    """A real, finished sample run (the default sample experiment), trained once per test session.

    The first worker to take the lock trains it and writes its path (or why it failed) to ``trained.json``;
    the others wait on the lock and read that file, so two workers never train the same run.
    """
    from dpo_tui.core.runs import Run

    shared = _shared_dir(tmp_path_factory)
    result = shared / "trained.json"
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not result.exists():
                try:
                    path = start_run(session_runs_root, "--name", "shared")
                    wait_for_state(path, {"finished", "failed", "crashed", "stopped"}, timeout=600)
                    status = Run(path).status()
                    error = None if status.state == "finished" else (
                        f"shared sample run ended {status.state}: {status.message}\n" + Run(path).log_path.read_text()[-3000:])
                    result.write_text(json.dumps({"path": str(path), "error": error}))
                except BaseException as exc:
                    result.write_text(json.dumps({"path": None, "error": f"training the shared sample run failed: {exc}"}))
                    raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    recorded = json.loads(result.read_text())
    assert recorded["error"] is None, recorded["error"]
    return Run(Path(recorded["path"]))
