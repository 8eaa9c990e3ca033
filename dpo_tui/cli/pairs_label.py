"""``dpo-tui pairs label DIR``: turn a pairs folder's candidates into ``DIR/pairs.jsonl`` and ``DIR/summary.json``.

``--rule SPEC`` (see :mod:`dpo_tui.core.pairs.labelling`), ``--judge SPEC`` (see :mod:`dpo_tui.core.judge`),
``--by rule|judge|hand`` (default: judge when a judge is given, else rule), ``--format standard|conversational``
(default: conversational when the prompts are), ``--json`` (print the summary object). With a rule and a judge,
the one ``--by`` names decides and the other is compared (the agreement figure). Exit 0 when the written data
passes the data check, 2 when it does not (the findings are printed; the file stays).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import EXIT_USAGE, UserError


def register_label(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "label", help="choose chosen/rejected per prompt (rule, judge or hand) and write DIR/pairs.jsonl",
        description="Label a pairs folder: pick chosen/rejected per prompt by a rule, a judge or the hand labels, "
        "drop ties, empties, near-duplicates and repeated prompts (counted), write DIR/pairs.jsonl and "
        "DIR/summary.json, and run the data check on the result.")
    p.add_argument("dir", metavar="DIR", help="the pairs folder (the --out of dpo-tui pairs generate)")
    p.add_argument("--rule", metavar="SPEC",
                   help="shorter, longer, must:REGEX, must-not:REGEX, words:MIN-MAX, joined with + "
                   "(e.g. 'must-not:(?i)great question+shorter')")
    p.add_argument("--judge", metavar="SPEC", help="shorter, longer, regex:P, rm=FOLDER or url=URL,model=NAME")
    p.add_argument("--by", choices=("rule", "judge", "hand"),
                   help="who decides (default: judge when --judge is given, else rule); the other is compared")
    p.add_argument("--format", choices=("standard", "conversational"), dest="fmt",
                   help="output form (default: conversational when the prompts are)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core.judge import parse_judge_spec
    from ..core.pairs.labelling import check_folder, label_folder, parse_rule, render_summary

    rule = parse_rule(args.rule) if args.rule is not None else None
    if args.judge is not None:
        parse_judge_spec(args.judge)  # a bad spec is refused before anything is read
    by = args.by or ("judge" if args.judge is not None else "rule" if rule is not None else "")
    if not by:
        raise UserError("pairs label needs --rule, --judge or --by hand",
                        hint="for example: dpo-tui pairs label DIR --rule shorter")
    if by == "rule" and rule is None:
        raise UserError("--by rule needs --rule", hint="for example --rule shorter")
    if by == "judge" and args.judge is None:
        raise UserError("--by judge needs --judge", hint="for example --judge url=http://127.0.0.1:8000/v1,model=NAME")
    if by == "hand" and rule is not None and args.judge is not None:
        raise UserError("--by hand compares with one of --rule / --judge, not both")
    folder = Path(args.dir)
    check_folder(folder, by)
    if args.judge is not None:
        from ..worker.pairs_label import run_label  # a reward-model judge needs the ML stack

        result, report = run_label(folder, by=by, rule=rule, judge_spec=args.judge, fmt=args.fmt)
    else:
        result, report = label_folder(folder, by=by, rule=rule, fmt=args.fmt)
    if args.json:
        sys.stdout.write(json.dumps(result.summary, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_summary(result.summary) + "\n")
    if not report.ok:
        sys.stderr.write(f"dpo-tui: {result.summary['output']} does not pass the data check (the file is kept): "
                         "fix the findings above, or relabel\n")
        return EXIT_USAGE
    return 0
