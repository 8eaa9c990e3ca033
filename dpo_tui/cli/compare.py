"""``dpo-tui compare ID ID… [--json]``: final and best metrics side by side, and what differs."""

from __future__ import annotations

import argparse
import json

from ..core import paths
from ..core.compare import compare
from ..core.errors import UserError
from ..core.runs import find_run
from . import add_runs_dir

TABLE_METRICS = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_compare(args: argparse.Namespace) -> int:
    root = paths.runs_root(args.runs_dir)
    ids: list[str] = list(args.run_ids)
    if args.group:
        from ..core.runs import list_runs

        ids += [s.id for s in reversed(list_runs(root)) if s.group == args.group]
    if len(ids) < 2:
        raise UserError("compare needs at least two runs", hint="give two or more run ids, or --group NAME")
    runs = [find_run(root, i) for i in dict.fromkeys(ids)]
    doc = compare(runs)
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return 0
    width = max(12, *(len(r["label"]) for r in doc["runs"]))
    print("Differences:" if doc["diff"] else "The configs are identical.")
    for field, values in doc["diff"].items():
        print(f"  {field:<24} " + "  ".join(f"{_cell(v):<{width}}" for v in values))
    print()
    print(f"{'metric (final / best)':<24} " + "  ".join(f"{r['label']:<{width}}" for r in doc["runs"]))
    for metric in TABLE_METRICS:
        cells = []
        for r in doc["runs"]:
            final, best = r["final"].get(metric), r["best"].get(metric)
            cells.append(f"{_cell(final) if final is not None else '—'} / {_cell(best) if best is not None else '—'}")
        print(f"{metric:<24} " + "  ".join(f"{c:<{width}}" for c in cells))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs: metrics and config differences")
    add_runs_dir(p)
    p.add_argument("run_ids", nargs="*", metavar="ID")
    p.add_argument("--group", help="add every run of this group (a β ladder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)
