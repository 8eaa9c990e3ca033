"""β ladders: one run per β, everything else equal, sharing a ``group``.

The CLI (``dpo-tui ladder``) and the console's ladder dialog both check the β list with
:func:`parse_betas` and create the runs with :func:`make_ladder`, so they accept the same input
and make the same runs. The runs go into the runs root's queue (one at a time per device, or
spread over GPUs); :func:`cancel_group` stops a ladder's running run and cancels its queued ones.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

from .config import RunConfig, build_config
from .errors import UserError
from .locks import locks_dir
from .run_states import ACTIVE_STATES
from .runs.folder import Run
from .runs.lifecycle import create_run, launch, stop
from .runs.listing import RunSummary


def parse_betas(text: str, source: str = "--betas") -> list[float]:
    """``"0.05,0.1,0.5"`` → ``[0.05, 0.1, 0.5]``: at least two distinct values, each > 0.

    ``source`` names where the list was typed in the error (``--betas``, or the dialog's ``β list``).
    """
    try:
        betas = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"{source} {text!r}: expected comma-separated numbers, e.g. 0.05,0.1,0.5") from None
    if len(betas) < 2:
        raise UserError(f"{source} needs at least two values for a ladder")
    bad = [b for b in betas if not (b > 0 and math.isfinite(b))]
    if bad:
        raise UserError(f"{source}: every β must be a finite number > 0 (got {', '.join(map(str, bad))})")
    if len(set(betas)) != len(betas):
        raise UserError(f"{source}: each value once (a repeated β would train the same run twice)")
    return betas


def make_ladder(root: Path, base: RunConfig, betas: list[float], group: str, spread_gpus: list[int] | None = None) -> list[Run]:
    """Create and launch one run per β. Same seed and data order; only β (and the GPU, if spread) differ.

    ``base`` comes with its ``init_adapter`` already resolved (``core.init_adapter.resolve_init_adapter``,
    once for the ladder): the rungs copy its absolute folder and source run, so all start from one adapter.

    Every run is created before any is launched, so the queue (ordered by creation) holds the
    whole ladder when the first supervisor looks at it.
    """
    configs = ladder_configs(base, betas, group, spread_gpus)
    locks_dir(root)  # the queue's lock folder must be usable before any run exists
    created = [create_run(root, config) for config in configs]
    for n, run in enumerate(created):
        try:
            launch(run)
        except (UserError, OSError) as exc:
            cause = exc.summary if isinstance(exc, UserError) else (exc.strerror or str(exc))
            for rest in created[n:]:  # never launched: say so, rather than leave them to look crashed
                with contextlib.suppress(OSError):
                    rest.update_status(state="failed", kind="crash", message=f"not launched: {cause}", phase="done",
                                       ended_at=time.time())
            raise UserError(f"β ladder {group}: could not launch {run.id}: {cause}",
                            hint=f"{n} of {len(created)} runs were launched; delete the failed ones and retry") from None
    return created


def ladder_configs(base: RunConfig, betas: list[float], group: str, spread_gpus: list[int] | None = None) -> list[RunConfig]:
    """Every rung's config, each validated whole, before anything is created: a bad rung creates no run."""
    configs = []
    for i, beta in enumerate(betas):
        changes: dict[str, object] = {"beta": beta, "group": group}
        if spread_gpus:
            changes["gpus"] = [spread_gpus[i % len(spread_gpus)]]
            changes["nproc"] = 1
        try:
            configs.append(build_config({**base.model_dump(), **changes}))
        except UserError as exc:
            raise UserError(f"β ladder rung {i + 1} (β={beta:g}): {exc.summary}", exc.problems, exc.hint) from None
    return configs


def cancel_group(members: list[RunSummary]) -> tuple[list[RunSummary], list[str]]:
    """Stop each active member (a queued one leaves the queue): (the runs stopped or cancelled, problems).

    A member that ended meanwhile is skipped silently; any other refusal is a problem line.
    """
    done: list[RunSummary] = []
    problems: list[str] = []
    for summary in members:
        if summary.state not in ACTIVE_STATES:
            continue
        try:
            stop(Run(summary.path))
        except UserError as exc:
            if "is not running" not in exc.summary:
                problems.append(exc.summary)
            continue
        except OSError as exc:
            problems.append(f"{summary.id}: {exc.strerror or exc}")
            continue
        done.append(summary)
    return done, problems
