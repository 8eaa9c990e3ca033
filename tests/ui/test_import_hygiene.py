"""The console never imports the ML stack, not even indirectly (docs/design/import-worlds.md).

Checked in fresh interpreters: after ``import dpo_tui.ui.app``, and after driving the real app
headless through every screen (model, dataset with token counts, experiment with the VRAM bar,
runs, monitor, help, chat), so lazily imported modules are covered too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "deepspeed")
REPO = Path(__file__).resolve().parents[2]


def run_child(code: str, env: dict[str, str] | None = None) -> dict:
    full_env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=240, env=full_env, cwd=str(REPO)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_does_not_pull_the_ml_stack() -> None:
    result = run_child(
        f"""
        import json, sys
        import dpo_tui.ui.app
        print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
        """
    )
    assert result["heavy"] == []


def test_every_screen_without_the_ml_stack(tmp_path: Path) -> None:
    from tests.support.uikit import build_fake_sample_data

    sample = build_fake_sample_data(tmp_path / "sample_data")
    home = tmp_path / "home"
    code = f"""
        import asyncio, json, sys
        from tests.support.uikit import make_services, learning_events
        from pathlib import Path
        from dpo_tui.ui.app import DpoTuiApp

        async def main():
            root = Path({str(home)!r}) / "runs"
            app = DpoTuiApp(make_services(root))
            seen = {{}}
            async with app.run_test(size=(100, 30)) as pilot:
                async def wait(cond, t=10.0):
                    for _ in range(int(t / 0.05)):
                        if cond():
                            return
                        await pilot.pause(0.05)
                    raise SystemExit("timeout")
                await wait(lambda: type(app.screen).__name__ == "ModelScreen" and app.screen.scanned)
                seen["first"] = [m for m in {HEAVY!r} if m in sys.modules]
                await pilot.press("enter")
                await wait(lambda: type(app.screen).__name__ == "DatasetScreen" and app.screen.tokens is not None)
                await pilot.press("p")
                await pilot.pause(0.3)
                await pilot.press("ctrl+n")
                await wait(lambda: type(app.screen).__name__ == "ExperimentScreen" and app.screen.estimate is not None)
                await pilot.press("ctrl+g")  # the β ladder dialog validates with core.ladder
                await wait(lambda: type(app.screen).__name__ == "LadderDialog")
                app.screen.query_one("#ladder-betas").value = "0.1,0.2"
                await pilot.pause(0.2)
                await pilot.press("escape")
                await pilot.press("2")
                await pilot.pause(0.5)
                from dpo_tui.ui.screens.compare import CompareScreen
                app.push_screen(CompareScreen([]))
                await wait(lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.comparison is not None)
                await pilot.press("escape")
                app.watch_runs()
                await wait(lambda: app.run_states is not None)
                await pilot.press("3")
                await pilot.pause(0.3)
                await pilot.press("4")
                await pilot.pause(0.3)
                await pilot.press("question_mark")
                await pilot.pause(0.3)
            seen["all"] = [m for m in {HEAVY!r} if m in sys.modules]
            print(json.dumps(seen))

        asyncio.run(main())
    """
    result = run_child(code, env={"DPO_TUI_SAMPLE_DATA": str(sample)})
    assert result == {"first": [], "all": []}
