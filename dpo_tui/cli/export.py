"""``dpo-tui export ID``: merged weights, a GGUF (llama.cpp / Ollama), an Ollama Modelfile, a hub push.

The request is checked first (:mod:`dpo_tui.core.export_plan`, light), then the heavy work runs
in-process from :mod:`dpo_tui.worker.export`, imported only inside the handler so ``dpo-tui --help``
stays instant. Progress goes to stderr (one updating line on a terminal); the outputs go to stdout.
``--json`` prints the worker's JSON-line events on stdout instead, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import add_runs_dir


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a run: merged weights, GGUF, Ollama Modelfile, push to the hub",
        description=(
            "Export a finished run's weights. --merged writes the adapter merged into the base (safetensors, "
            "tokenizer, chat template, model card); --gguf writes a GGUF for llama.cpp (by llama.cpp's own converter "
            "when it is found, else the built-in writer: Llama, Mistral, Qwen2); "
            "--ollama writes a Modelfile (and the GGUF beside it unless --gguf says elsewhere); --push-to-hub "
            "uploads the merged folder, or the adapter when no --merged is given. Outputs appear all together "
            "or not at all."
        ),
    )
    p.add_argument("run_id", metavar="ID", help="run id, id prefix, folder, or the --name it was started with")
    add_runs_dir(p)
    p.add_argument("--checkpoint", type=_checkpoint_arg, metavar="N|best",
                   help="export checkpoint-N instead of the final weights; best: the lowest eval loss (train loss without an eval split)")
    p.add_argument("--merged", metavar="DIR", help="write the merged model (safetensors + tokenizer + card) here")
    p.add_argument("--gguf", metavar="FILE", help="write a GGUF file here (.gguf)")
    p.add_argument("--gguf-type", default="f16", type=str.lower, metavar="TYPE",
                   help="GGUF weight type: f16 (default), bf16, q8_0; with llama.cpp also q4_k_m, q5_k_m, q6_k …")
    p.add_argument("--llama-cpp", metavar="DIR|off",
                   help="llama.cpp folder whose convert_hf_to_gguf.py and llama-quantize write the GGUF "
                        "(default: DPO_TUI_LLAMA_CPP, then PATH; 'off' or none found: the built-in writer)")
    p.add_argument("--ollama", metavar="DIR", help="write an Ollama Modelfile here (with model.gguf unless --gguf is given)")
    p.add_argument("--ollama-name", metavar="NAME", help="model name for the printed `ollama create` command")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload to this hub repo (needs a token: `hf auth login`)")
    p.add_argument("--private", action="store_true", help="create the hub repo as private")
    p.add_argument("--force", action="store_true", help="replace existing destinations")
    p.add_argument("--json", action="store_true", help="print JSON-line progress and result events on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import UserError
    from ..core.export_plan import outputs_summary

    if args.json:
        def sink(event: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(event, default=str) + "\n")
            sys.stdout.flush()

        try:
            plan = _plan(args)
            sink({"type": "plan", "plan": json.loads(plan.to_json())})
            from ..worker.export import run_export

            run_export(plan, sink)
        except UserError as exc:
            sink({"type": "error", "summary": exc.summary, "hint": exc.hint, "text": exc.render()})
            raise
        return 0

    plan = _plan(args)
    from ..worker.export import run_export

    display = _ProgressLine(sys.stderr)
    for line in plan.describe():
        display.note(line)
    try:
        outputs = run_export(plan, display)
    finally:
        display.close()
    for line in outputs_summary(outputs):
        print(line)
    return 0


def _checkpoint_arg(text: str) -> int | str:
    if text == "best":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step number or 'best', got {text!r}") from None


def _plan(args: argparse.Namespace) -> Any:
    from ..core.export_plan import plan_export
    from ..core.paths import runs_root
    from ..core.runs.resolve import resolve_run

    run = resolve_run(runs_root(args.runs_dir), args.run_id)
    checkpoint = args.checkpoint
    if checkpoint == "best":
        from ..core.checkpoints import best_checkpoint

        best = best_checkpoint(run)
        if best is None:
            from ..core.errors import UserError

            raise UserError(f"Run {run.id} saved no complete weights yet", hint="wait for its first checkpoint")
        print(f"best: {best.note}", file=sys.stderr)
        checkpoint = best.checkpoint_step
    return plan_export(
        run,
        checkpoint=checkpoint,
        merged=args.merged,
        gguf=args.gguf,
        gguf_type=args.gguf_type,
        ollama=args.ollama,
        ollama_name=args.ollama_name,
        push_to_hub=args.push_to_hub,
        private=args.private,
        force=args.force,
        llama_cpp=args.llama_cpp,
    )


class _ProgressLine:
    """Stage lines on stderr; on a terminal, per-tensor progress rewrites one line."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.open_line = False

    def _clear(self) -> None:
        if self.open_line:
            self.stream.write("\r\033[K")
            self.open_line = False

    def note(self, text: str) -> None:
        self._clear()
        self.stream.write(f"export: {text}\n")
        self.stream.flush()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "stage":
            self.note(event.get("message", ""))
        elif kind == "warning":
            self.note(f"warning: {event.get('message', '')}")
        elif kind == "progress":
            done, total = event.get("done", 0), event.get("total", 0)
            if self.tty:
                width = 24
                filled = int(width * done / total) if total else width
                bar = "█" * filled + "·" * (width - filled)
                self.stream.write(f"\r\033[K  {bar} {done}/{total} {event.get('message', '')}"[:200])
                self.stream.flush()
                self.open_line = True
            elif done == total:
                self.note(f"{event.get('stage')}: {done}/{total} done")

    def close(self) -> None:
        self._clear()
