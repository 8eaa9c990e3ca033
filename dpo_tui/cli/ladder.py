"""``dpo-tui ladder --betas 0.05,0.1,0.5 [train overrides]``: one run per β, everything else equal.

The runs share a ``group`` and go into the runs root's queue: one at a time per device (in the
order created), or spread over ``--spread-gpus``. The queue lives in the run folders and their
detached supervisors, so it survives the console exiting. ``dpo-tui ladder --cancel GROUP`` stops
the group's running run and cancels the queued ones. ``--init-adapter RUN`` is resolved once, so
every rung starts from the same adapter. The ladder itself is ``core.ladder``, shared with the console.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..core import paths
from ..core import runs as runs_mod
from ..core.errors import Problem, UserError
from ..core.init_adapter import resolve_init_adapter
from ..core.ladder import cancel_group, make_ladder, parse_betas
from ..core.preflight import check_inputs
from ..core.remote_code import trust_remote_code_warning
from . import add_runs_dir
from .runs_cmd import add_config_flags, config_from_args


def cmd_ladder(args: argparse.Namespace) -> int:
    root = paths.runs_root(args.runs_dir)
    if args.cancel:
        members = [s for s in runs_mod.list_runs(root) if s.group == args.cancel]
        if not members:
            raise UserError(f"No runs in group '{args.cancel}'")
        done, problems = cancel_group(members)
        for s in done:
            print(f"{s.id}: {'cancelled' if s.state == 'queued' else 'stopping'}")
        sys.stdout.flush()
        if problems:
            raise UserError(f"Could not cancel all of '{args.cancel}'", problems=[Problem(p) for p in problems])
        return 0
    if not args.betas:
        raise UserError("give --betas 0.05,0.1,0.5 (or --cancel GROUP)")
    betas = parse_betas(args.betas)
    # Once for the whole ladder: every rung starts from the same adapter folder, named as in `dpo-tui train`.
    base, adapter_notes = resolve_init_adapter(config_from_args(args), root)
    check_inputs(base)
    for note in adapter_notes:
        print(f"Warning: {note}", file=sys.stderr)
    if base.trust_remote_code:
        print(f"Warning: {trust_remote_code_warning(base.model)}", file=sys.stderr)
    group = args.group or base.group or time.strftime("ladder-%Y%m%d-%H%M%S")
    try:
        spread = [int(g) for g in args.spread_gpus.split(",")] if args.spread_gpus else None
    except ValueError:
        raise UserError(f"--spread-gpus {args.spread_gpus!r}: expected comma-separated GPU numbers, e.g. 0,1") from None
    runs = make_ladder(root, base, betas, group, spread)
    for run in runs:
        print(run.id)
    print(f"Ladder '{group}': {len(runs)} runs queued. Compare with: dpo-tui compare --group {group}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ladder", help="a β ladder: one queued run per β, everything else equal")
    add_runs_dir(p)
    p.add_argument("--betas", help="comma-separated β values, e.g. 0.05,0.1,0.5")
    p.add_argument("--spread-gpus", metavar="0,1", help="run the ladder's runs side by side on these GPUs (one each)")
    p.add_argument("--cancel", metavar="GROUP", help="stop the running run of a ladder and cancel its queued runs")
    add_config_flags(p)
    p.set_defaults(func=cmd_ladder)
