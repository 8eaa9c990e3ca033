"""Key-to-screen latency of the console, idle and while runs stream (Pilot, whole key handling and redraw).

Runs ``bench/load_check.py``'s streaming measurement (10 runs writing real-format events, keys pressed
every 0.2 s: mode switches, cursor moves, the monitor's smoothing toggle) and prints p50/p95 idle and
under load, and the ratio of the two (the idle figures are the baseline, measured in the same run).
Budget: p95 ≤ 100 ms idle, ≤ 250 ms under load.

``--profile FILE`` also records a cProfile of the UI thread (the asyncio loop: every handler, layout
and render) while the runs stream, and prints the top functions by cumulative time.

    python bench/key_latency.py [--runs 10] [--minutes 2] [--speed 10] [--profile /tmp/keys.prof] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import json
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
IDLE_BUDGET_MS = 100.0
LOAD_BUDGET_MS = 250.0


def load_check() -> Any:
    spec = importlib.util.spec_from_file_location("load_check", HERE / "load_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(runs: int, minutes: float, speed: float, profile: Path | None) -> dict[str, Any]:
    lc = load_check()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        original = lc.drive_keys
        calls = {"n": 0}

        async def drive_keys(*args: Any, **kwargs: Any) -> None:
            calls["n"] += 1
            streaming = calls["n"] == 2  # the first call is the idle baseline
            if streaming:
                profiler.enable()
            try:
                await original(*args, **kwargs)
            finally:
                if streaming:
                    profiler.disable()

        lc.drive_keys = drive_keys
    with tempfile.TemporaryDirectory(prefix="dpo-tui-keys-") as tmp:
        r = asyncio.run(lc.measure_streaming(Path(tmp) / "runs", n_runs=runs, rate=20.0, minutes=minutes, speed=speed))
    idle, busy = r["latency_idle_press"], r["latency_streaming_press"]
    out = {
        "runs": runs, "simulated_minutes": minutes, "speed": speed,
        "idle": idle, "load": busy, "idle_by_key_p50_ms": r["latency_idle_by_key_p50_ms"],
        "load_by_key_p50_ms": r["latency_streaming_by_key_p50_ms"],
        "load_vs_idle_p95": round(busy["p95_ms"] / max(0.1, idle["p95_ms"]), 2),
        "within_budget": idle["p95_ms"] <= IDLE_BUDGET_MS and busy["p95_ms"] <= LOAD_BUDGET_MS,
    }
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        out["profile_top"] = text.getvalue()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=2.0, help="simulated minutes of streaming")
    parser.add_argument("--speed", type=float, default=10.0, help="writer pace, multiple of real time (0 = unpaced)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the UI thread under load here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = measure(args.runs, args.minutes, args.speed, args.profile)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    for label, key, budget in (("idle", "idle", IDLE_BUDGET_MS), ("load", "load", LOAD_BUDGET_MS)):
        s = r[key]
        print(f"{label:<5} p50 {s['p50_ms']:7.1f} ms  p95 {s['p95_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms  (n={s['n']}, budget p95 {budget:g} ms)")
    print(f"p95 load / idle: {r['load_vs_idle_p95']}  ({r['runs']} runs streaming, {r['simulated_minutes']:g} simulated min at {r['speed']:g}×)")
    print(f"p50 by key idle: {r['idle_by_key_p50_ms']}")
    print(f"p50 by key load: {r['load_by_key_p50_ms']}")
    if "profile_top" in r:
        print(r["profile_top"])
    return 0 if r["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
