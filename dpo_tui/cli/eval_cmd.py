"""``dpo-tui eval RUN_ID…``: did the behaviour move, and what did it cost? Tuned against base on held-out material.

The request is checked first (:func:`dpo_tui.core.eval.jobs.plan_eval`: runs, adapters, base, files,
judge), then the worker starts detached (it survives this command) and this command follows its
progress. Ctrl-C stops following, never the job. ``--list``, ``--follow``, ``--stop`` and ``--resume``
act on earlier jobs (by id, id prefix or folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..core import paths
from ..core.errors import UserError
from ..core.numfmt import num
from . import add_runs_dir
from .follow import ProgressLine, detach_on_interrupt


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate tuned runs against their base: length, pair accuracy, judge win rate, facts",
        description=(
            "Answer held-out prompts with the base and each run's adapter (one mixed batch), then report the "
            "change in answer length with a confidence interval, empty/truncated/looping answers, implicit-reward "
            "accuracy on held-out pairs, a judge's win rate (both orders; length-controlled too) and facts kept. "
            "Writes RUN/eval/ID.json into each run. The job runs detached; Ctrl-C stops following it, not the job."
        ),
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs on one base model (id, prefix, folder or name)")
    add_runs_dir(p)
    p.add_argument("--prompts", metavar="FILE", help="held-out prompts (.txt one a line, or .jsonl); default: the sample's "
                                                     "held-out prompts, else the run's eval split")
    p.add_argument("--pairs", metavar="FILE", help="held-out preference pairs (default: the run's eval split when it has one)")
    p.add_argument("--facts", metavar="FILE", help='facts .jsonl ({"prompt", "expected", "match"}) to check quality kept')
    p.add_argument("--judge", metavar="SPEC", help="shorter, longer, regex:PATTERN, rm=FOLDER or url=URL,model=NAME")
    p.add_argument("--samples", type=int, default=3, metavar="N", help="sampled answers per prompt and model (default 3)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="answer length limit (default 128)")
    p.add_argument("--checkpoint", default="final", metavar="final|best|NAME", help="which weights (default final)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="rows per batched pass (default 16; lower it on OOM)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--json", action="store_true", help="print the reports as JSON when done")
    p.add_argument("--detach", action="store_true", help="print the job folder and return at once")
    p.add_argument("--list", action="store_true", help="list evaluation jobs")
    p.add_argument("--follow", metavar="JOB", help="follow a running job")
    p.add_argument("--stop", metavar="JOB", help="stop a job (it can be resumed)")
    p.add_argument("--resume", metavar="JOB", help="continue a stopped, failed or crashed job")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..core.eval import jobs

    root = paths.runs_root(args.runs_dir)
    actions = [a for a in ("list", "follow", "stop", "resume") if getattr(args, a)]
    if len(actions) > 1 or (actions and args.run_ids):
        raise UserError("Give run ids, or one of --list, --follow, --stop, --resume", hint="dpo-tui eval --help")
    if args.list:
        return _list(root, args.json)
    if args.stop:
        job_dir = jobs.find_eval_job(root, args.stop)
        from ..core.job_folder import stop_job

        state = stop_job(job_dir, wait_s=60)
        print(f"evaluation {job_dir.name}: {state}")
        if state == "stopped":
            print(f"resume it: dpo-tui eval --resume {job_dir.name}")
        return 0
    if args.follow:
        return follow(jobs.find_eval_job(root, args.follow), args.json)
    if args.resume:
        job_dir = jobs.resume_eval(jobs.find_eval_job(root, args.resume))
    else:
        plan = jobs.plan_eval(root, list(args.run_ids), prompts=args.prompts, facts=args.facts, pairs=args.pairs,
                              judge=args.judge, samples=args.samples, max_new_tokens=args.max_new_tokens,
                              checkpoint=args.checkpoint, device=args.device, batch_size=args.batch_size)
        job_dir = jobs.start_eval(plan)
    if args.detach:
        print(job_dir)
        return 0
    print(f"evaluation {job_dir.name} started ({job_dir})", file=sys.stderr)
    return follow(job_dir, args.json)


def _list(root: Path, as_json: bool) -> int:
    from ..core.eval.jobs import eval_job_dirs, read_eval_job

    views = [read_eval_job(d) for d in eval_job_dirs(root)]
    if as_json:
        print(json.dumps([{"id": v.id, "path": str(v.path), "state": v.state, "done": v.done, "total": v.total,
                           "run_ids": v.run_ids, "reports": v.reports, "error": v.error or None} for v in views], indent=2))
        return 0
    if not views:
        print("No evaluations yet. Start one with: dpo-tui eval RUN_ID")
        return 0
    for v in views:
        count = f" {v.done}/{v.total}" if v.total else ""
        print(f"{v.id}  {v.state}{count}  {' '.join(v.run_ids)}" + (f"  {v.error}" if v.error else ""))
    return 0


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f" ETA {seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f" ETA {seconds}s"


def progress_text(view: Any) -> str:
    count = f" {view.done}/{view.total}" if view.total else ""
    return f"eval {view.id}: {view.stage or view.state}{count}{_eta(view.eta_s)}"


def follow(job_dir: Path, as_json: bool = False, poll: float = 0.5) -> int:
    """Show progress until the job ends; Ctrl-C leaves it running and says how to get back to it."""
    from ..core.eval.jobs import read_eval_job
    from ..core.job_folder import ACTIVE_STATES

    out = ProgressLine(sys.stderr)  # stdout is kept for the reports (--json)
    with detach_on_interrupt() as detached:
        while True:
            view = read_eval_job(job_dir)
            ended = view.state not in ACTIVE_STATES
            out.show(progress_text(view), final=ended)
            if ended:
                break
            if detached():
                out.close()
                print(f"The evaluation keeps running. Follow it: dpo-tui eval --follow {job_dir.name}; "
                      f"stop it: dpo-tui eval --stop {job_dir.name}", file=sys.stderr)
                return 0
            time.sleep(poll)
    for warning in view.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if view.state == "stopped":
        print(f"evaluation {view.id} stopped; resume it: dpo-tui eval --resume {view.id}", file=sys.stderr)
        return 1
    if view.state != "done":
        raise UserError(f"Evaluation {view.id} {view.state}: {view.error or 'no reason recorded'}",
                        hint=f"fix that, then `dpo-tui eval --resume {view.id}` (see {job_dir / 'worker.log'})")
    return print_reports(view.reports, as_json)


def print_reports(reports: dict[str, str], as_json: bool) -> int:
    from ..core.eval.report import UnreadableReport, read_report

    loaded = {}
    for run_id, path in reports.items():
        try:
            loaded[run_id] = read_report(Path(path))
        except UnreadableReport as exc:
            raise UserError(f"Run {run_id}: the evaluation report is unreadable: {exc.why}", hint=str(path)) from None
    if as_json:
        print(json.dumps({rid: r.to_json() for rid, r in loaded.items()}, indent=2, allow_nan=False))
        return 0
    for rid, report in loaded.items():
        for line in report_table(report):
            print(line)
        print(f"  report: {reports[rid]}")
        print()
    return 0


def _ci(ci: Any) -> str:
    return f"[{num(ci[0])}, {num(ci[1])}]" if ci else ""


def _change(c: Any) -> str:
    rel = f" ({c.rel * 100:+.0f} %)" if c.rel is not None else ""
    return f"{c.diff:+.3g}{rel} CI {_ci(c.ci)}"


def report_table(r: Any) -> list[str]:
    """One run's base-vs-tuned table, as printed by ``dpo-tui eval``."""
    b = r.behaviour
    rows: list[list[str]] = [
        ["words mean", num(b.base.mean_words), num(b.tuned.mean_words), _change(b.words)],
        ["words median", num(b.base.median_words), num(b.tuned.median_words), ""],
        ["words p90", num(b.base.p90_words), num(b.tuned.p90_words), ""],
        ["tokens mean", num(b.base.mean_tokens), num(b.tuned.mean_tokens), _change(b.tokens)],
        ["empty/truncated/looping", f"{b.base.empty}/{b.base.truncated}/{b.base.looping}",
         f"{b.tuned.empty}/{b.tuned.truncated}/{b.tuned.looping}", f"of {b.tuned.n}"],
    ]
    if b.sampled_words is not None and b.sampled_base is not None and b.sampled_tuned is not None:
        rows.append(["sampled words mean", num(b.sampled_base.mean_words), num(b.sampled_tuned.mean_words), _change(b.sampled_words)])
    if r.pairs is not None:
        rows.append(["pair accuracy", "", num(r.pairs.accuracy), f"CI {_ci(r.pairs.accuracy_ci)}, n {r.pairs.n}"])
        rows.append(["pair margin", "", num(r.pairs.mean_margin), f"β {num(r.pairs.beta)}"])
    if r.facts is not None:
        f = r.facts
        rows.append(["facts correct", f"{f.base_correct}/{f.n}", f"{f.tuned_correct}/{f.n}", _change(f.change)])
    if r.judge is not None:
        j = r.judge
        ci = f"CI {_ci(j.win_rate_ci)}; " if j.win_rate_ci else ""
        rows.append([f"judge {j.name} win rate", "", num(j.win_rate),
                     f"{ci}{j.wins}W {j.losses}L {j.ties}T, no verdict {j.no_verdict}"])
        rows.append(["length-controlled win rate", "", num(j.length_controlled_win_rate), ""])
    header = ["measure", "base", "tuned", "change"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    out = [f"{r.run_id} ({r.checkpoint}) vs base {r.base_model} · eval {r.id} · {r.settings.prompts} prompts"]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return out
