"""``dpo-tui compare ID ID… [--json]``: final and best metrics side by side, and what differs."""

from __future__ import annotations

import argparse
import json

from ..core import paths
from ..core.compare import compare
from ..core.errors import UserError
from ..core.events import printable
from ..core.numfmt import column_widths, num
from ..core.runs.resolve import resolve_run
from . import add_runs_dir

TABLE_METRICS = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")
EVAL_METRICS = ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies")


def _cell(value: object) -> str:
    return num(value, digits=4) if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Plain-text rows, each column as wide as its widest cell, so wide values never push others out of line."""
    widths = column_widths(header, rows)
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]


def cmd_compare(args: argparse.Namespace) -> int:
    root = paths.runs_root(args.runs_dir)
    ids: list[str] = list(args.run_ids)
    if args.group:
        from ..core.runs import list_runs

        ids += [s.id for s in reversed(list_runs(root)) if s.group == args.group]
    if len(ids) < 2:
        raise UserError("compare needs at least two runs", hint="give two or more run ids, or --group NAME")
    runs = list({run.path: run for run in (resolve_run(root, i) for i in dict.fromkeys(ids))}.values())
    doc = compare(runs)
    eval_reports = eval_summaries(runs)
    if eval_reports:
        doc["eval"] = eval_reports
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return 0
    labels = [printable(r["label"]) for r in doc["runs"]]
    if doc["diff"]:
        print("Differences:")
        for line in _table(["  field", *labels], [[f"  {field}", *(printable(_cell(v)) for v in values)] for field, values in doc["diff"].items()]):
            print(line)
    else:
        print("The configs are identical.")
    print()
    rows = []
    # The eval split's rows only when a compared run has one: a column of dashes says nothing.
    evals = [m for m in EVAL_METRICS if any(r["final"].get(m) is not None for r in doc["runs"])]
    for metric in (*TABLE_METRICS, *evals):
        cells = []
        for r in doc["runs"]:
            final, best = r["final"].get(metric), r["best"].get(metric)
            cells.append(f"{_cell(final) if final is not None else '—'} / {_cell(best) if best is not None else '—'}")
        rows.append([metric, *cells])
    for line in _table(["metric (final / best)", *labels], rows):
        print(line)
    if eval_reports:
        print()
        for line in _table(["evaluation (newest)", *labels], eval_rows([eval_reports[r["id"]] for r in doc["runs"]])):
            print(line)
    return 0


EVAL_ROWS = (
    ("words base → tuned", "words_base", "words_tuned"),
    ("words change", "words_change", None),
    ("words change CI excludes 0", "words_ci_excludes_zero", None),
    ("pair accuracy", "pair_accuracy", None),
    ("pair margin", "pair_margin", None),
    ("facts correct base → tuned", "facts_base", "facts_tuned"),
    ("judge win rate", "win_rate", None),
    ("length-controlled win rate", "lc_win_rate", None),
)


def eval_summaries(runs: list) -> dict[str, dict | None]:
    """Each run's newest evaluation summary, or {} when none of the runs has been evaluated."""
    from ..core.eval.report import latest_report

    reports = {run.id: latest_report(run.path) for run in runs}
    if not any(reports.values()):
        return {}
    return {rid: (r.summary() if r is not None else None) for rid, r in reports.items()}


def eval_rows(summaries: list[dict | None]) -> list[list[str]]:
    """Table rows of the evaluation summaries, one column per run (— where a run has no report or value)."""
    def cell(summary: dict | None, key: str, second: str | None) -> str:
        if summary is None or summary.get(key) is None:
            return "—"
        value = summary[key]
        if key == "words_change":
            return f"{value * 100:+.0f} %"
        if isinstance(value, bool):
            return "yes" if value else "no"
        # Shares of facts read as percentages; word counts and rates as numbers.
        fmt = (lambda v: f"{v * 100:.0f} %") if key == "facts_base" else (lambda v: _cell(float(v)))
        text = fmt(value)
        if second is not None:
            text += f" → {fmt(summary[second]) if summary.get(second) is not None else '—'}"
        return text

    return [[label, *(cell(s, key, second) for s in summaries)] for label, key, second in EVAL_ROWS]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare runs: metrics and config differences")
    add_runs_dir(p)
    p.add_argument("run_ids", nargs="*", metavar="RUN", help="run ids, prefixes, folders or run names")
    p.add_argument("--group", help="add every run of this group (a β ladder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)
