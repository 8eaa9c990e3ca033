"""``dpo-tui chat``: answer prompts with a run's base and tuned model, side by side, from a script.

    dpo-tui chat --run 20261126-2130 --prompt "What is the capital of Kenya?" --greedy
    dpo-tui chat --run 20261126-2130 --prompts sample_data/prefs/heldout_prompts.txt --greedy --json

One chat worker holds the base model once and the run's adapter; each batch of prompts is answered
by both in one batched generation. ``--json`` prints a list of ``{"prompt", "base", "tuned", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..core.errors import Problem, UserError
from ..core.fsutil import JSON_ERRORS
from . import add_runs_dir

HELP = "answer prompts with a run's base and tuned model side by side"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("chat", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_runs_dir(p)
    p.add_argument("--run", required=True, metavar="ID", help="run id, unique id prefix, or run folder")
    p.add_argument("--checkpoint", metavar="STEP", help="use checkpoint-STEP instead of the final adapter")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable)")
    src.add_argument("--prompts", metavar="FILE", help="prompts: a text file (one per line) or JSONL with a 'prompt' field")
    p.add_argument("--greedy", action="store_true", help="deterministic answers (most likely token)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="answer length limit (default 128)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    p.add_argument("--system", default="", metavar="TEXT", help="system prompt")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("--reward", action="store_true", help="add the implicit DPO reward β·(log π_tuned − log π_base) of each answer")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="prompts answered together (default 8)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: the first GPU, else CPU)")
    p.add_argument("--dtype", default="auto", help="auto, bf16, fp16, fp32")
    p.add_argument("--json", action="store_true", help="print a JSON list of {prompt, base, tuned, ...}")
    p.set_defaults(func=run)


def read_prompts(path: Path) -> list[str | list[dict[str, str]]]:
    """Prompts from a text file (one per non-blank line) or JSON lines with a ``prompt`` field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"No prompts file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read {path}: {exc}") from None
    prompts: list[str | list[dict[str, str]]] = []
    problems = []
    is_jsonl = path.suffix in (".jsonl", ".json")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not is_jsonl:
            prompts.append(line.strip())
            continue
        try:
            row = json.loads(line)
        except JSON_ERRORS as exc:
            problems.append(Problem(f"not JSON: {getattr(exc, 'msg', 'nested too deeply')}", file=str(path), line=n))
            continue
        value = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(value, str) and value.strip() or isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            prompts.append(value)
        else:
            problems.append(Problem("needs a 'prompt' string or message list", file=str(path), line=n))
    if problems:
        raise UserError(f"{len(problems)} bad line(s) in {path}", problems[:10])
    if not prompts:
        raise UserError(f"No prompts in {path}")
    return prompts


def _messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in prompt]


def run(args: argparse.Namespace) -> int:
    from ..core import chat_protocol as P
    from ..core.chat_client import ChatClient, ChatError, run_adapter
    from ..core.paths import runs_root
    from ..core.runs.resolve import resolve_run

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be ≥ 1")
    if args.batch_size < 1:
        raise UserError("--batch-size must be ≥ 1")
    settings = P.GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
        greedy=args.greedy, system_prompt=args.system, stop=list(args.stop),
    )
    bad = settings.problems()
    if bad:
        raise UserError("Bad generation settings", [Problem(b) for b in bad])
    root = runs_root(args.runs_dir)
    run_ = resolve_run(root, args.run)
    config = run_.config()
    choice = run_adapter(run_, args.checkpoint)
    if choice.path != run_.adapter_dir and not args.checkpoint:
        sys.stderr.write(f"dpo-tui chat: run {run_.id} has no final adapter yet; using {choice.path.name}\n")
    prompts: list[Any] = list(args.prompt) if args.prompt else read_prompts(Path(args.prompts))
    for p in prompts:
        problem = P.validate_messages(_messages(p))
        if problem:
            raise UserError(f"Bad prompt: {problem}")
    name = choice.adapter_name
    client = ChatClient(log_path=root / ".logs" / "chat-worker.log")
    rows: list[dict[str, Any]] = []

    def note(ev: dict[str, Any]) -> None:
        if ev.get("type") == P.WARNING:
            sys.stderr.write(f"dpo-tui chat: warning: {ev.get('message')}\n")

    try:
        client.start()
        client.load_model(choice.base_path, device=args.device, dtype=args.dtype, on_other=note)
        client.load_adapter(name, choice.path)
        for start in range(0, len(prompts), args.batch_size):
            chunk = prompts[start : start + args.batch_size]
            sides = []
            for p in chunk:
                sides += [P.side(P.BASE, _messages(p)), P.side(name, _messages(p))]
            result = client.reply(sides, settings)
            for w in result["warnings"]:
                note(w)
            rewards: list[dict[str, Any]] = []
            if args.reward:
                rid = result["id"]
                rewards = client.score([{"adapter": name, "beta": config.beta, "ref": {"request": rid, "side": i}}
                                        for i in range(len(sides))])
            for k, p in enumerate(chunk):
                base, tuned = result["sides"][2 * k], result["sides"][2 * k + 1]
                row: dict[str, Any] = {"prompt": p, "base": base["text"].strip(), "tuned": tuned["text"].strip()}
                for key, ev in (("base", base), ("tuned", tuned)):
                    row[f"{key}_tokens"] = ev.get("tokens")
                    row[f"{key}_finish"] = ev.get("finish_reason")
                    row[f"{key}_tokens_per_s"] = ev.get("tokens_per_s")
                    row[f"{key}_ttft_s"] = ev.get("ttft_s")
                if rewards:
                    row["base_reward"] = rewards[2 * k]["reward"]
                    row["tuned_reward"] = rewards[2 * k + 1]["reward"]
                rows.append(row)
                if not args.json:
                    _print_row(len(rows), len(prompts), row)
        if args.json:
            json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
            sys.stdout.write("\n")
    except ChatError as exc:
        err = exc.to_user_error()
        if exc.kind == "crashed":
            err.hint = f"see {client.log_path}"
        raise err from None
    finally:
        client.close()
    return 0


def _print_row(n: int, total: int, row: dict[str, Any]) -> None:
    prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1].get("content", "")
    out = sys.stdout
    out.write(f"[{n}/{total}] {prompt}\n")
    for key in ("base", "tuned"):
        extra = f", reward {row[key + '_reward']:+.3f}" if key + "_reward" in row else ""
        out.write(f"  {key:<5} ({row[key + '_tokens']} tok{extra}): {row[key]}\n")
    out.write("\n")
    out.flush()
