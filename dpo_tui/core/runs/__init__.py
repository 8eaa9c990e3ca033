"""Run folders: the contract between the UI, the CLI and the trainer.

A run is a folder, and the folder is the truth (its layout: ``folder.py``). This package creates,
lists, reads and reconciles run folders, picks resume checkpoints, and launches/stops the
detached supervisor. It never imports the ML stack.

- ``status``: the ``status.json`` model and process liveness;
- ``folder``: the :class:`Run` handle, its truthful status and its checkpoints;
- ``listing``: finding runs in the runs root and the runs list (:class:`RunLister`);
- ``lifecycle``: create, launch, resume, stop, delete.

``from dpo_tui.core.runs import X`` works for every name below.
"""

from __future__ import annotations

import os  # noqa: F401 - tests/worker/test_stop_signal.py patches ``runs.os.killpg``

from ..run_states import ACTIVE_STATES, RESUMABLE_STATES, TERMINAL_STATES, State
from .folder import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LOCKS_DIR,
    LOG_FILE,
    MODEL_DIR,
    STATUS_FILE,
    SUPERVISOR_LOG,
    Checkpoint,
    Run,
    checkpoint_complete,
)
from .lifecycle import (
    _signal_group,
    check_resume_devices,
    create_run,
    delete,
    freeze_paths,
    launch,
    make_run_id,
    prepare_resume,
    resume,
    slug,
    stop,
)
from .listing import (
    RunLister,
    RunSummary,
    find_run,
    is_run_dir,
    last_log_metrics,
    list_run_dirs,
    list_runs,
    made_by_dpo_tui,
    printable,
    summarize,
)
from .status import (
    EXIT_FAILED,
    EXIT_FINISHED,
    EXIT_STOPPED,
    STALL_AFTER_S,
    RunStatus,
    host_name,
    process_alive,
    process_start_time,
)

__all__ = [
    "ACTIVE_STATES", "ADAPTER_DIR", "CHECKPOINTS_DIR", "CONFIG_FILE", "EXIT_FAILED", "EXIT_FINISHED", "EXIT_STOPPED",
    "LOCKS_DIR", "LOG_FILE", "MODEL_DIR", "RESUMABLE_STATES", "STALL_AFTER_S", "STATUS_FILE", "SUPERVISOR_LOG",
    "TERMINAL_STATES", "Checkpoint", "Run", "RunLister", "RunStatus", "RunSummary", "State", "_signal_group",
    "check_resume_devices", "checkpoint_complete", "create_run", "delete", "find_run", "freeze_paths",
    "host_name", "is_run_dir", "last_log_metrics", "launch", "list_run_dirs", "list_runs", "made_by_dpo_tui",
    "make_run_id", "prepare_resume", "printable", "process_alive", "process_start_time", "resume", "slug", "stop", "summarize",
]
