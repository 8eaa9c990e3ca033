"""``dpo-tui data``: check, convert and preview preference data with the trainer's own loader.

- ``data check PATH [--model M] [--max-length N] [--batch-size B] [--map F=C ...] [--split S] [--json]``
  prints the lint report (file, line and field per finding) and exits 0 when the data is usable (warnings
  allowed), 2 when it is not. ``--json`` prints one object: ``{"format", "rows", "errors": [{"line", "field",
  "message", ...}], "warnings": [...], "stats": {...}}`` where ``rows`` counts usable pairs.
- ``data convert PATH OUT.jsonl`` writes the normalized rows (exactly what trains) as JSON lines.
- ``data preview PATH --model M [--row N] [--max-length N]`` shows one pair as the trainer tokenizes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.errors import EXIT_USAGE, UserError
from ..core.mapping import parse_map


def dataset_arg(text: str) -> str:
    """``sample`` names the bundled pairs, as ``--dataset sample`` does for ``train``."""
    from ..core.config import SAMPLE_DATASET
    from ..core.paths import sample_dataset_path

    return str(sample_dataset_path()) if text == SAMPLE_DATASET else text


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", type=dataset_arg,
                   help="a .jsonl/.json/.csv/.parquet file, a folder, a hub dataset id, or 'sample' (the bundled pairs)")
    p.add_argument("--split", default="train", help="split to read when the dataset has several (default: train)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="map a column to prompt/chosen/rejected/system, e.g. --map prompt=question (repeatable)")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="check, convert and preview preference data",
                                 description="Check, convert and preview preference data with the trainer's loader.")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(data))
    data.set_defaults(func=lambda args: _no_action(data))

    check = sub.add_parser("check", help="lint a dataset; exit 0 if usable, 2 if not",
                           description="Lint a preference dataset and print what the trainer would see.")
    _common(check)
    check.add_argument("--model", help="tokenizer for token statistics (model folder, hub id in cache, 'sample')")
    check.add_argument("--max-length", type=int, default=None,
                       help="max_length for truncation/drop figures (default: what train would use with --model)")
    check.add_argument("--batch-size", type=int, default=None,
                       help="per-device batch size for the padded-length figure (default: what train would use)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.set_defaults(func=cmd_check)

    convert = sub.add_parser("convert", help="write the normalized rows (what trains) as JSON lines",
                             description="Write the normalized rows exactly as the trainer receives them.")
    _common(convert)
    convert.add_argument("out", metavar="OUT.jsonl")
    convert.add_argument("--drop-bad", action="store_true",
                         help="write the usable rows even when some rows have errors")
    convert.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    convert.set_defaults(func=cmd_convert)

    preview = sub.add_parser("preview", help="show one pair rendered and tokenized as the trainer sees it",
                             description="Show a pair through the model's chat template, completion marked "
                             "[[trained]] and {{cut: truncated}}.")
    _common(preview)
    preview.add_argument("--model", required=True, help="model folder, hub id in cache, or 'sample'")
    preview.add_argument("--row", type=int, default=1, help="which usable row (1-based, default 1)")
    preview.add_argument("--max-length", type=int, default=1024, help="max_length (default 1024)")
    preview.add_argument("--ids", action="store_true", help="also print the token ids")
    preview.set_defaults(func=cmd_preview)


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_check(args: argparse.Namespace) -> int:
    from ..core.data import check_data

    column_map = parse_map(args.map)
    report = check_data(args.path, split=args.split, column_map=column_map)
    if args.model:
        from ..core.tokenstats import ChatTokenizer, add_token_stats

        if args.max_length is not None and args.max_length <= 0:
            raise UserError("--max-length must be positive")
        if args.batch_size is not None and args.batch_size <= 0:
            raise UserError("--batch-size must be positive")
        from ..core.run_defaults import default_config

        try:
            defaults = default_config({"model": args.model})  # the run `dpo-tui train --model M` would start
        except (UserError, ValueError):  # the tokenizer load below names what is wrong with the model
            defaults = default_config({})
        tok = ChatTokenizer.from_model(args.model)
        add_token_stats(report, args.path, tok, max_length=args.max_length or defaults.max_length,
                        batch_size=args.batch_size or defaults.per_device_batch_size, split=args.split, column_map=column_map)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report.render() + "\n")
        padded = (report.stats.get("tokens") or {}).get("padded")
        if padded and padded.get("n"):
            sys.stdout.write(
                f"padded length per batch (batch {padded['batch_size']}, {padded['sequences_per_batch']} "
                f"sequences): mean {padded['mean']}, p90 {padded['p90']}, max {padded['max']}\n"
            )
    return 0 if report.ok else EXIT_USAGE


def cmd_convert(args: argparse.Namespace) -> int:
    from ..core.data import load_preference_data, write_jsonl

    out = Path(args.out)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists", hint="pass --force to overwrite it")
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UserError(f"{out}: the output is JSON lines; name it .jsonl")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: no such folder")
    loaded = load_preference_data(args.path, split=args.split, column_map=parse_map(args.map))
    report = loaded.report
    if not report.ok and not args.drop_bad:
        sys.stderr.write(report.render() + "\n")
        if report.rows_usable:
            sys.stderr.write("dpo-tui: nothing written: fix the errors above, or pass --drop-bad to write the "
                             f"{report.rows_usable} usable rows\n")
        else:
            sys.stderr.write("dpo-tui: nothing written: no row is usable; fix the errors above\n")
        return EXIT_USAGE
    if not report.rows_usable:
        raise UserError(f"{args.path}: no row is usable, so there is nothing to write", hint=f"see why with: dpo-tui data check {args.path}")
    n = write_jsonl(loaded.rows, out)
    sys.stdout.write(f"wrote {n} {report.format} rows ({report.shape}) to {out}"
                     + (f"; {report.rows_total - n} row(s) with errors left out" if report.rows_total > n else "")
                     + "\n")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from ..core.tokenstats import ChatTokenizer, preview_from_source

    if args.row < 1:
        raise UserError("--row counts from 1")
    tok = ChatTokenizer.from_model(args.model)
    line, pv = preview_from_source(args.path, tok, args.row - 1, max_length=args.max_length, split=args.split,
                                   column_map=parse_map(args.map))
    sys.stdout.write(f"{args.path}: row {args.row} (line {line}), {pv.format}, tokenizer {tok.name}\n")
    sys.stdout.write(pv.render_text() + "\n")
    if args.ids:
        prep = pv.prepared
        sys.stdout.write(f"prompt_ids   {prep.prompt_ids}\nchosen_ids   {prep.chosen_ids}\n"
                         f"rejected_ids {prep.rejected_ids}\n")
    return 0
