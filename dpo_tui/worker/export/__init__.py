"""Export a run's weights: merged safetensors, a GGUF for llama.cpp / Ollama, an Ollama Modelfile, a hub push.

Run in-process by ``dpo-tui export`` (:func:`run_export`, see :mod:`dpo_tui.cli.export`) or as a child
process (``python -m dpo_tui.worker.export --plan PLAN.json``, the command
:func:`dpo_tui.core.export_plan.worker_command` builds) that prints JSON-line progress on stdout, or, with
``--job FOLDER``, appends it to the console's job folder (:mod:`dpo_tui.core.export_jobs`). The plan
comes from :func:`dpo_tui.core.export_plan.plan_export`, which has already checked everything an
operator can get wrong; this package does the heavy work:

1. **Merge** (:mod:`.merge`): the base model (loaded from the run's config, never from the adapter's
   recorded path) in its own dtype, the LoRA adapter merged into it (``merge_and_unload``). Full
   fine-tuning runs use their ``model/`` (or checkpoint) as it is.
2. **Merged folder** (:mod:`.merge`): safetensors + config + generation config + tokenizer (with its chat
   template) + a model card (:mod:`dpo_tui.core.model_card`) naming the base, dataset, β, loss type,
   rank, steps and final metrics.
3. **GGUF**: llama.cpp's own tools when found (:mod:`.llama_cpp_convert`, any architecture, k-quants), else
   :mod:`.gguf_writer` (Llama, Mistral written as ``llama``, Qwen2; f16, bf16 or q8_0).
4. **Ollama** (:mod:`.ollama`, :mod:`dpo_tui.core.ollama_template`): a Modelfile whose TEMPLATE is the
   chat template translated to a Go template (derived by rendering the Jinja template with marker
   messages and checked against it), with stop tokens.
5. **Push** (:mod:`.hub_push`): ``HfApi.upload_folder`` of the merged folder (or the adapter) with the
   model card.

Outputs are all-or-nothing (:mod:`.staging`): each is written to a hidden temporary sibling and renamed
into place only when every requested output is complete; any failure (a full disk, an unwritable path,
Ctrl-C) removes them and says what and where. The push runs after that, so a failed push leaves the
local outputs in place.

Progress is a stream of JSON objects (one per line in the child process)::

    {"type": "stage", "stage": "merge", "message": "merging the final adapter into the base"}
    {"type": "progress", "stage": "gguf", "done": 12, "total": 38, "message": "blk.3.attn_q.weight"}
    {"type": "warning", "message": "..."}
    {"type": "done", "outputs": {"merged": "...", "gguf": "...", "modelfile": "...", "ollama_command": "..."}}
    {"type": "error", "summary": "...", "problems": [...], "hint": "...", "text": "..."}
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ...core.errors import Problem, UserError
from ...core.export_plan import GGUF_ARCHITECTURES, ExportPlan, unsupported_architecture
from ...core.model_card import one_line_card, run_facts
from .gguf_writer import write_gguf
from .hub_push import push_to_hub
from .llama_cpp_convert import gguf_via_llama_cpp
from .merge import Loaded, load_merged, save_merged
from .ollama import chat_shape, modelfile_text, stop_tokens
from .staging import Progress, Reporter, Staging, check_free_space, errno_of, write_failure

# The public surface. run_export looks its stages up in this module at call time, so a test can replace
# one of them (write_gguf, modelfile_text, check_free_space) here.
__all__ = ["Progress", "Reporter", "chat_shape", "check_free_space", "gguf_via_llama_cpp", "main", "modelfile_text",
           "run_export", "stop_tokens", "write_gguf"]


def run_export(plan: ExportPlan, sink: Reporter | None = None) -> dict[str, Any]:
    """Do the export the plan describes. Returns the outputs; raises :class:`UserError` on failure."""
    progress = Progress(sink)
    started = time.time()
    staging = Staging(force=plan.force)
    outputs: dict[str, Any] = {}
    facts = run_facts(plan)
    loaded: Loaded | None = None
    current = ("export", Path(plan.merged or plan.gguf or plan.ollama or plan.run_path))
    merged_dir: Path | None = None
    try:
        if plan.needs_merged_model:
            loaded = load_merged(plan, progress)
            _check_gguf_arch(plan, loaded.model)
            check_free_space(_space_needs(plan, loaded))
        if plan.merged:
            current = ("merged folder", Path(plan.merged))
            progress.stage("save", f"writing merged weights to {plan.merged}")
            temp = staging.add_dir(Path(plan.merged))
            assert loaded is not None
            save_merged(plan, loaded, temp, facts)
            merged_dir = temp
            outputs["merged"] = plan.merged
        if plan.ollama:
            staging.add_dir(Path(plan.ollama))
        if plan.gguf:
            current = ("GGUF file", Path(plan.gguf))
            assert loaded is not None
            target = staging.path_for(Path(plan.gguf))
            target.parent.mkdir(parents=True, exist_ok=True)
            if plan.converter == "llama.cpp":
                outputs["gguf_bytes"] = gguf_via_llama_cpp(plan, loaded, merged_dir, target, facts, progress)
            else:
                outputs["gguf_bytes"] = write_gguf(loaded.model, loaded.tokenizer, target, plan.gguf_type, progress,
                                                   name=plan.run_id, description=one_line_card(facts))
            outputs["gguf"] = plan.gguf
            outputs["gguf_type"] = plan.gguf_type
        if plan.ollama:
            current = ("Ollama Modelfile", Path(plan.ollama) / "Modelfile")
            assert loaded is not None and plan.gguf
            progress.stage("ollama", "writing the Ollama Modelfile")
            modelfile_final = Path(plan.ollama) / "Modelfile"
            text = modelfile_text(loaded.tokenizer, Path(plan.gguf), Path(plan.ollama), plan.run_id, progress)
            staging.path_for(modelfile_final).write_text(text, encoding="utf-8")
            outputs["modelfile"] = str(modelfile_final)
            outputs["ollama_command"] = f"ollama create {plan.ollama_name} -f {shlex.quote(str(modelfile_final))}"
        current = ("export", Path(plan.merged or plan.gguf or plan.ollama or plan.run_path))
        staging.commit()
    except UserError:
        staging.abort()
        raise
    except BaseException as exc:
        staging.abort()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if errno_of(exc) is not None:
            raise write_failure(exc, current[0], current[1]) from exc
        raise
    finally:
        loaded = None  # the merged model can be large: free it before the (slow) upload

    if plan.push_to_hub:
        outputs["hub_url"] = push_to_hub(plan, facts, progress)
    outputs["seconds"] = round(time.time() - started, 2)
    outputs["warnings"] = progress.warnings
    progress.sink({"type": "done", "outputs": outputs})
    return outputs


def _space_needs(plan: ExportPlan, loaded: Loaded) -> list[tuple[str, Path, int]]:
    """Bytes each destination will take: the merged weights as they are in memory, the GGUF at its type."""
    params = list(loaded.model.state_dict().values())
    merged_bytes = sum(t.numel() * t.element_size() for t in params)
    needs = []
    if plan.merged:
        needs.append(("merged folder", Path(plan.merged), merged_bytes))
    if plan.gguf:
        numel = sum(t.numel() for t in params)
        # llama.cpp's k-quants go through an f16 file first: the f16 size bounds the peak.
        per = {"f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32}.get(plan.gguf_type, 2.0)
        needs.append(("GGUF file", Path(plan.gguf), int(numel * per)))
    return needs


def _check_gguf_arch(plan: ExportPlan, model: Any) -> None:
    """The planner could not always see config.json; once loaded, the architecture is certain."""
    if plan.gguf and plan.converter != "llama.cpp" and model.config.model_type not in GGUF_ARCHITECTURES:
        raise unsupported_architecture(model.config.model_type)


# --- the child process ------------------------------------------------------------------------------
def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


class _JobSink:
    """Events appended to the job's progress.jsonl (flushed per line: the console tails it), the outcome
    to its status.json: the contract of :mod:`dpo_tui.core.export_jobs`."""

    def __init__(self, job_dir: Path) -> None:
        from ...core.export_jobs import PROGRESS_FILE, write_status
        from ...core.runs.status import process_start_time

        self.job_dir = job_dir
        self.outputs: dict[str, Any] = {}
        self.error = ""
        self.file = open(job_dir / PROGRESS_FILE, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole export
        write_status(job_dir, state="running", pid=os.getpid(), pid_start=process_start_time(os.getpid()),
                     started_at=time.time())

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") == "done":
            self.outputs = event.get("outputs") or {}
        elif event.get("type") == "error":
            self.error = str(event.get("summary") or "")
        self.file.write(json.dumps(event, default=str) + "\n")
        self.file.flush()

    def finish(self, code: int) -> None:
        from ...core.export_jobs import write_status

        self.file.close()
        state = {0: "done", 130: "interrupted"}.get(code, "failed")
        write_status(self.job_dir, state=state, exit_code=code, ended_at=time.time(), outputs=self.outputs,
                     error=self.error or None)


def _error_event(exc: UserError) -> dict[str, Any]:
    return {"type": "error", "summary": exc.summary, "hint": exc.hint,
            "problems": [p.__dict__ for p in exc.problems], "text": exc.render()}


def main(argv: list[str] | None = None) -> int:
    """``python -m dpo_tui.worker.export --plan FILE``: exit 0 done, 2 refused, 130 interrupted, 1 internal error."""
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.export",
                                     description="Export a run (plan from dpo_tui.core.export_plan) with JSON-line progress.")
    parser.add_argument("--plan", required=True, help="plan JSON file ('-' = stdin)")
    parser.add_argument("--job", type=Path, help="job folder (dpo_tui.core.export_jobs): events go to its progress.jsonl "
                                                 "and the outcome to its status.json")
    args = parser.parse_args(argv)
    emit = _emit if args.job is None else _JobSink(args.job)
    code = _main(args, emit)
    if isinstance(emit, _JobSink):
        emit.finish(code)
    return code


def _main(args: argparse.Namespace, emit: Reporter) -> int:
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: partial outputs are removed

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text(encoding="utf-8")
        plan = ExportPlan.from_json(text)
        run_export(plan, emit)
    except UserError as exc:
        emit(_error_event(exc))
        return 2
    except KeyboardInterrupt:
        emit(_error_event(UserError("Export interrupted; the partial output was removed")))
        return 130
    except Exception as exc:  # noqa: BLE001 - reported as an event, traceback to stderr
        import traceback

        traceback.print_exc()
        emit(_error_event(UserError(f"Export failed: {type(exc).__name__}: {exc}", problems=[Problem("internal error")])))
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
