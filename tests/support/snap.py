"""Snapshot-test helpers: the two terminal sizes every screen is drawn at, and waiting for a screen to settle."""

from __future__ import annotations

import time
from typing import Any

import pytest

SIZES = [pytest.param((100, 30), id="100x30"), pytest.param((80, 24), id="80x24")]


async def settle(pilot: Any, condition: Any, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, every worker finished, and one more short pause has painted."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("screen did not settle")
        await pilot.pause(0.02)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


def header_ready(app: Any) -> bool:
    return app.gpu_inventory is not None
