"""``dpo-tui pairs``: make preference pairs from a file of prompts.

``pairs generate`` validates the plan (:mod:`dpo_tui.core.pairs.plan`), starts the detached worker and
follows it (Ctrl-C detaches; the job keeps going). ``status``, ``stop``, ``resume`` and ``list`` act on
job folders; a bare name (no ``/``) that is not a folder here means ``$DPO_TUI_HOME/pairs/NAME``.
``pairs label`` is registered by :mod:`.pairs_label`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core.errors import UserError
from . import add_runs_dir
from .follow import ProgressLine, detach_on_interrupt


def job_path(text: str) -> Path:
    """A job folder as typed: a path, or a name under the default pairs root."""
    path = Path(text).expanduser()
    if not path.exists() and "/" not in text:
        from ..core.paths import pairs_root

        named = pairs_root() / text
        if named.exists():
            return named
    return path


def follow(job_dir: Path, poll: float = 0.5) -> int:
    """Show progress until the job ends; Ctrl-C or a hang-up detaches. Exit 0 done, 3 stopped, 1 otherwise."""
    from ..core.pairs.plan import read_pairs_job

    out = ProgressLine()
    try:
        with detach_on_interrupt() as detached:
            while not detached():
                view = read_pairs_job(job_dir)
                ended = view.state not in ("starting", "running")
                out.show(view.line(), final=ended)
                if ended:
                    if view.state == "done":
                        print(f"Candidates: {job_dir / 'candidates.jsonl'}. Label them with: dpo-tui pairs label {job_dir}")
                    elif view.state == "stopped":
                        print(f"Stopped; continue with: dpo-tui pairs resume {job_dir}")
                    return {"done": 0, "stopped": 3}.get(view.state, 1)
                time.sleep(poll)
            out.close()
            print(f"Detached; the job continues. Follow it with: dpo-tui pairs status {job_dir} --follow", file=sys.stderr)
            return 0
    except BrokenPipeError:
        return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ..core.pairs.plan import existing_plan, plan_pairs, start_pairs
    from ..core.paths import runs_root

    if (args.instruction_a is None) != (args.instruction_b is None):
        raise UserError("give both --instruction-a and --instruction-b (or neither)")
    out = Path(args.out).expanduser()
    resuming = existing_plan(out.resolve()) is not None
    plan = plan_pairs(model=args.model, prompts=args.prompts, out=out, n=args.n, adapter=args.adapter,
                      runs_root=runs_root(args.runs_dir), temperature=args.temperature, top_p=args.top_p,
                      max_new_tokens=args.max_new_tokens, system=args.system, instruction_a=args.instruction_a,
                      instruction_b=args.instruction_b, seed=args.seed, batch_size=args.batch_size, device=args.device)
    if plan.adapter:
        which = "its final adapter" if plan.adapter_label == "final" else f"{plan.adapter_label} (no final adapter yet)"
        print(f"Sampling from run {plan.adapter}: {which}, base {plan.model}", file=sys.stderr)
    job = start_pairs(plan)
    verb = "Continuing" if resuming else "Started"
    print(f"{verb} pair generation in {job}: {plan.prompts_count} prompts × {plan.n} candidates", file=sys.stderr)
    return 0 if args.detach else follow(job)


def cmd_resume(args: argparse.Namespace) -> int:
    from ..core.pairs.plan import resume_pairs

    job = resume_pairs(job_path(args.dir))
    print(f"Resumed pair generation in {job}", file=sys.stderr)
    return 0 if args.detach else follow(job)


def cmd_status(args: argparse.Namespace) -> int:
    from ..core.pairs.plan import read_pairs_job

    job = job_path(args.dir)
    if not (job / "plan.json").exists():
        raise UserError(f"{job} is not a pairs job folder (no plan.json)", hint="dpo-tui pairs list shows the jobs")
    if args.follow:
        return follow(job)
    view = read_pairs_job(job)
    print(view.line())
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from ..core.job_folder import stop_job

    job = job_path(args.dir)
    state = stop_job(job, wait_s=args.wait)
    print(f"{job}: {state}")
    return 0 if state != "running" else 1


def cmd_list(args: argparse.Namespace) -> int:
    from ..core.pairs.plan import pairs_job_dirs, read_pairs_job
    from ..core.paths import pairs_root

    root = Path(args.root).expanduser() if args.root else pairs_root()
    dirs = pairs_job_dirs(root)
    if not dirs:
        print(f"No pairs jobs in {root}", file=sys.stderr)
        return 0
    for job in dirs:
        print(read_pairs_job(job).line())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pairs", help="make preference pairs: generate candidates for prompts, then label them")
    psub = p.add_subparsers(dest="pairs_command", metavar="ACTION", required=True, parser_class=type(p))

    g = psub.add_parser("generate", help="sample n candidates per prompt (a detached job; Ctrl-C detaches)")
    add_runs_dir(g)
    g.add_argument("--model", help="base model: a folder, a hub id in the HF cache, or 'sample' (default with "
                                   "--adapter: the run's base)")
    g.add_argument("--adapter", metavar="RUN_ID", help="sample from this run's tuned adapter (its final adapter, else "
                                                       "its newest complete checkpoint)")
    g.add_argument("--prompts", required=True, metavar="FILE", help=".txt (one prompt a line) or .jsonl ({\"prompt\": ...})")
    g.add_argument("--n", type=int, default=2, help="candidates per prompt, 2..8 (default 2)")
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--system", default="", metavar="TEXT", help="system prompt for generation")
    g.add_argument("--instruction-a", metavar="TEXT", help="steer even candidates (c0, c2…): appended to the user turn "
                                                           "for generation only")
    g.add_argument("--instruction-b", metavar="TEXT", help="steer odd candidates (c1, c3…)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=16, help="rows per batch (batch_size // n prompts at a time)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--out", required=True, metavar="DIR", help="the job folder: new, or the same job to continue it")
    g.add_argument("--detach", action="store_true", help="start it and return at once")
    g.set_defaults(func=cmd_generate)

    r = psub.add_parser("resume", help="continue a stopped, failed or crashed job (done prompts are skipped)")
    r.add_argument("dir", metavar="DIR")
    r.add_argument("--detach", action="store_true")
    r.set_defaults(func=cmd_resume)

    s = psub.add_parser("status", help="one line: state, prompts done, candidates, ETA")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--follow", "-f", action="store_true", help="follow until it ends (Ctrl-C detaches)")
    s.set_defaults(func=cmd_status)

    st = psub.add_parser("stop", help="stop a job; what it finished stays (resume continues it)")
    st.add_argument("dir", metavar="DIR")
    st.add_argument("--wait", type=float, default=30.0, help="seconds to wait for it to stop (default 30)")
    st.set_defaults(func=cmd_stop)

    ls = psub.add_parser("list", help="the pairs jobs in $DPO_TUI_HOME/pairs, newest first")
    ls.add_argument("--root", metavar="DIR", help="another folder of pairs jobs")
    ls.set_defaults(func=cmd_list)

    # --- labelling: `pairs label` is registered by its own module ---------------------------------
    from .pairs_label import register_label

    register_label(psub)
