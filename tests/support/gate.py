"""A step gate for fault tests: the trainer holds once a chosen step has run, so a fault lands at a known
step without slowing every step (the trainer side is ``build_callbacks`` in dpo_tui/worker/train_report.py)."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import wait_until


class StepGate:
    """``env`` makes a run hold after ``step`` (before that step is logged or saved); ``wait_reached``
    returns once it holds; ``release`` lets it go on. A stop (SIGTERM) also ends the hold."""

    def __init__(self, folder: Path, step: int) -> None:
        self.step = step
        self.path = folder / f"gate-step-{step}"
        self.reached = folder / f"gate-step-{step}.reached"

    @property
    def env(self) -> dict[str, str]:
        return {"DPO_TUI_FAULT_HOLD_AT_STEP": str(self.step), "DPO_TUI_FAULT_GATE": str(self.path)}

    def wait_reached(self, timeout: float = 300) -> None:
        wait_until(self.reached.exists, timeout=timeout, what=f"the trainer to hold after step {self.step}")

    def release(self) -> None:
        self.path.touch()
