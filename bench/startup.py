"""Time to the first usable screen of ``dpo-tui``, as a ratio to a minimal Textual app (budget ≤ 1.5, docs/design/budgets.md).

Both run in fresh interpreters (``python -c``), headless, measured from spawning the process to the
child reporting that its first screen is on screen; the minimum over ``--repeat`` alternating runs is
kept, so a busy machine hurts both sides alike.

- baseline: an App with Header, DataTable (one row), Input and Footer; "ready" = Textual's Ready event
  (the first frame is painted).
- dpo-tui:  ``DpoTuiApp`` exactly as ``dpo-tui`` builds it; "ready" = ``App.first_screen_ready``, which
  the first screen calls once its data is on screen (the model list with tiny-chat, or the runs table).

Two cases: an empty runs root (a newcomer: the model screen, tiny-chat listed) and a root with runs
(the runs overview, run ids listed; states and metrics follow from a worker, and that fuller time is
printed too, for information).

Bytecode: an installed package has its ``.pyc`` files (pip compiles a wheel at install, and Python
writes them on first import), and Textual's are already there. So the bench compiles ``dpo_tui``
first (``compileall``, what ``make venv``/``make run`` do as well); otherwise, on a machine with
``PYTHONDONTWRITEBYTECODE=1``, every launch would recompile our ~40 modules (30–80 ms) while the
baseline's Textual loads compiled. ``--cold`` measures that uncompiled case instead, for information.

    python bench/startup.py [--repeat 7] [--json] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET = 1.5
MARKER = "READY"

BASELINE = textwrap.dedent(
    """
    from textual.app import App
    from textual.widgets import DataTable, Footer, Header, Input

    class Minimal(App):
        def compose(self):
            yield Header()
            table = DataTable()
            table.add_columns("model", "size")
            table.add_row("tiny-chat", "1 MiB")
            yield table
            yield Input()
            yield Footer()

        def on_ready(self):
            print("READY", flush=True)
            self.exit()

    Minimal().run(headless=True, size=(100, 30))
    """
)

CONSOLE = textwrap.dedent(
    """
    import os
    from dpo_tui.core import paths
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.services import default_services

    FULL = bool(os.environ.get("BENCH_FULL"))

    class Bench(DpoTuiApp):
        def first_screen_ready(self):
            super().first_screen_ready()
            if FULL:
                self.set_interval(0.002, self._check_full)
            else:
                self._done()

        def _check_full(self):
            if getattr(self.screen, "listed", True):
                self.call_after_refresh(self._done)

        def _done(self):
            print("READY", self.current_mode, flush=True)
            self.exit()

    Bench(default_services(paths.runs_root(None))).run(headless=True, size=(100, 30))
    """
)


def time_child(code: str, env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds from spawning to READY, the first screen's mode)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdout is not None
    line = ""
    for line in proc.stdout:
        if line.startswith(MARKER):
            break
    elapsed = time.perf_counter() - started
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not line.startswith(MARKER):
        err = proc.stderr.read() if proc.stderr else ""
        raise SystemExit(f"child never became ready:\n{err[-2000:]}")
    return elapsed, line.split(maxsplit=1)[1].strip() if " " in line.strip() else ""


def make_runs(home: Path, count: int) -> None:
    sys.path.insert(0, str(REPO))
    from dpo_tui.core.config import SAMPLE_PRESET, build_config
    from dpo_tui.core.runs import RunStatus, create_run

    root = home / "runs"
    for i in range(count):
        run = create_run(root, build_config(dict(SAMPLE_PRESET)), run_id=f"20250101-0000{i:02d}-tiny-chat-b0.1")
        run.events_path.write_text(json.dumps({"v": 1, "seq": 1, "t": 1.0, "type": "started", "max_steps": 30}) + "\n")
        run.write_status(RunStatus(state="finished", step=30, max_steps=30, created_at=1.0))


def compile_package() -> None:
    import compileall

    compileall.compile_dir(str(REPO / "dpo_tui"), quiet=1, workers=0)


def measure(case: str, repeat: int, cold: bool = False) -> dict[str, str | float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if case.startswith("runs"):
            make_runs(home, 12)
        env = dict(os.environ, DPO_TUI_HOME=str(home), PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
        if case == "runs-full":
            env["BENCH_FULL"] = "1"
        env.pop("TEXTUAL", None)
        if cold:
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # and main() removed dpo_tui's .pyc: only ours compile
        base, ours, mode = [], [], ""
        for _ in range(repeat):
            base.append(time_child(BASELINE, env)[0])
            elapsed, mode = time_child(CONSOLE, env)
            ours.append(elapsed)
    b, o = min(base), min(ours)
    return {
        "case": case,
        "first_screen": mode,
        "baseline_s": round(b, 3),
        "dpo_tui_s": round(o, 3),
        "ratio": round(o / b, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cold", action="store_true", help="measure without dpo_tui's .pyc files (informational)")
    args = parser.parse_args()
    if args.cold:
        import shutil

        for cache in (REPO / "dpo_tui").rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    else:
        compile_package()
    results = [measure("newcomer", args.repeat, args.cold), measure("runs", args.repeat, args.cold)]
    # Informational: until every run's state and metrics are filled in (core.runs imports pydantic).
    full = measure("runs-full", args.repeat, args.cold)
    worst = max(float(r["ratio"]) for r in results)
    if args.json:
        print(json.dumps({"budget": BUDGET, "results": results, "runs_full": full, "pass": worst <= BUDGET}, indent=2))
    else:
        for r in results:
            print(
                f"{r['case']:<9} first screen {r['first_screen']:<6} baseline {r['baseline_s']:.3f}s  "
                f"dpo-tui {r['dpo_tui_s']:.3f}s  ratio {r['ratio']:.2f}"
            )
        print(
            f"(runs, until states and metrics are filled in: dpo-tui {full['dpo_tui_s']:.3f}s, ratio {full['ratio']:.2f}; "
            "informational, not budgeted)"
        )
        state = "cold: dpo_tui compiled from source at every launch" if args.cold else "dpo_tui bytecode compiled, as installed"
        print(f"budget ≤ {BUDGET}: {'PASS' if worst <= BUDGET else 'FAIL'} (worst ratio {worst:.2f}; {state})")
    return 0 if worst <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
