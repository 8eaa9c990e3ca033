"""What the console needs from the outside world, injected into the App.

Production code builds :class:`Services` with :func:`default_services`; tests pass fakes (a fixed
host label, a frozen clock, a launcher that replays a canned event log, a fixed GPU inventory).
Core modules are imported inside the functions that need them: ``core.runs`` pulls in pydantic
(~100 ms), which the first screen must not wait for.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from ..core.chat_client import ChatClient
    from ..core.gpus import GpuInventory
    from ..core.runs import Run
    from ..core.settings import Settings
    from .app import DpoTuiApp


def _preflight(config: Any) -> None:
    from ..core.preflight import check_inputs

    check_inputs(config)


def _launch(run: Run) -> int:
    from ..core import runs

    return runs.launch(run)


def _gpu_inventory() -> GpuInventory | None:
    """``core.gpus.inventory()``, or None while that module is not installed."""
    try:
        from ..core import gpus
    except ImportError:
        return None
    return gpus.inventory()


def _discover_models(extra_roots: list[Path]) -> list[Any]:
    from ..core import models

    return models.discover_models(extra_roots=extra_roots, include_cache=True)


def _make_ladder(root: Path, config: Any, betas: list[float], group: str) -> list[Run]:
    from ..core.ladder import make_ladder

    return make_ladder(root, config, betas, group)


def _chat_client(**kwargs: Any) -> ChatClient:
    from ..core.chat_client import ChatClient

    return ChatClient(**kwargs)


def _load_settings() -> Settings | None:
    try:
        from ..core import settings
    except ImportError:
        return None
    return settings.load_settings()


@dataclass
class Services:
    """Dependencies of the console. Every field has a production default."""

    runs_root: Path
    """The runs root every login sees (``--runs-dir`` or ``$DPO_TUI_HOME/runs``)."""
    clock: Callable[[], float] = time.time
    """Wall clock for ages and ETAs; tests freeze it."""
    host_label: str = field(default_factory=socket.gethostname)
    """Shown in the header; tests fix it so snapshots do not depend on the machine."""
    launcher: Callable[[Run], int] = _launch
    """Starts a created run detached (``core.runs.launch``); returns a pid."""
    preflight: Callable[[Any], None] = _preflight
    """Checks a RunConfig before a run exists (``core.preflight.check_inputs``): raises UserError."""
    ladder: Callable[[Path, Any, list[float], str], list[Run]] = _make_ladder
    """Creates and launches one queued run per β (``core.ladder.make_ladder(root, config, betas, group)``)."""
    gpu_inventory: Callable[[], GpuInventory | None] = _gpu_inventory
    """Returns a ``core.gpus.GpuInventory`` (or None when unknown)."""
    discover_models: Callable[[list[Path]], list[Any]] = _discover_models
    """Lists local models (``core.models.discover_models``)."""
    load_settings: Callable[[], Settings | None] = _load_settings
    """Operator settings (``core.settings.load_settings``), or None."""
    chat_client: Callable[..., ChatClient] = _chat_client
    """Makes the chat screen's (not yet started) worker client: ``ChatClient(log_path=...)``; tests give
    one that runs a fake worker."""
    root_label: str | None = None
    """How the runs root is shown (default: its path); snapshot tests fix it."""
    poll_interval: float = 0.1
    """How often the monitor reads new events (seconds)."""
    runs_refresh_interval: float = 2.0
    """How often the runs overview re-reads the runs root (seconds)."""
    watch_interval: float = 2.0
    """How often the app checks the runs root for runs that ended, to notify (seconds; 0 = never)."""
    gpu_refresh_interval: float = 5.0
    """How often the header refreshes free GPU memory (seconds; 0 = once)."""
    animate: bool = True
    """Tests turn animations and cursor blink off for deterministic snapshots."""


def root_label(services: Services, width: int | None = None) -> str:
    """The runs root as shown: ``~`` for the home folder, and at most ``width`` characters (the middle
    elided: ``/scratch/…/dpo-tui/runs``), so a deep path never pushes the counts off the line."""
    label = services.root_label or str(services.runs_root)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (label == home or label.startswith(home + os.sep)):
        label = "~" + label[len(home):]
    if width is not None and len(label) > width:
        keep = max(1, width - 1)
        label = label[: keep // 3] + "…" + label[len(label) - (keep - keep // 3):]
    return label


def services_of(node: DOMNode) -> Services:
    """The console's :class:`Services`, typed, from any screen or widget mounted in the console app."""
    services = getattr(node.app, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError(f"{type(node).__name__} is mounted outside the dpo-tui console app (no services)")
    return services


def console_app(node: DOMNode) -> DpoTuiApp:
    """The console app, typed (its ``setup``, ``open_monitor``, ...), from any node mounted in it."""
    from .app import DpoTuiApp

    app = node.app
    if not isinstance(app, DpoTuiApp):
        raise RuntimeError(f"{type(node).__name__} is mounted outside the dpo-tui console app")
    return app


def default_services(runs_root: Path) -> Services:
    return Services(runs_root=runs_root)
