"""A job worker with no model: marks itself running, reports progress, and stops cleanly on SIGTERM.

Run as ``python -m tests.support.dummy_job DIR``; it lets the job-folder tests use a real detached
process and real signals without loading torch.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from dpo_tui.core.job_folder import ProgressWriter, mark_running, write_status


def main() -> int:
    job = Path(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    mark_running(job)
    progress = ProgressWriter(job)
    done = 0
    while not stop.is_set() and done < 10_000:
        done += 1
        progress.emit({"type": "progress", "done": done, "total": 10_000})
        time.sleep(0.01)
    write_status(job, state="stopped" if stop.is_set() else "done", ended_at=time.time(), done=done)
    progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
