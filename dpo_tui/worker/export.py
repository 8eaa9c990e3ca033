"""Export a run's weights: merged safetensors, a GGUF for llama.cpp / Ollama, an Ollama Modelfile, a hub push.

Run as a child process (``python -m dpo_tui.worker.export --plan PLAN.json``; the console does this and
streams the JSON lines it prints) or in-process by the CLI (:func:`run_export`). The plan comes from
:func:`dpo_tui.core.export_plan.plan_export`, which has already checked everything an operator can get
wrong; this module does the heavy work:

1. **Merge**: the base model (loaded from the run's config, never from the adapter's recorded path) in its
   own dtype, the LoRA adapter merged into it (``merge_and_unload``). Full fine-tuning runs use their
   ``model/`` (or checkpoint) as it is.
2. **Merged folder**: safetensors + config + generation config + tokenizer (with its chat template) +
   a model card naming the base, dataset, β, loss type, rank, steps and final metrics.
3. **GGUF**: written here with the ``gguf`` library: llama.cpp tensor names, the Q/K row permutation
   llama.cpp applies to Llama-family attention, the tokenizer (vocabulary, merges, token types, special
   ids, chat template) and the architecture metadata. Llama, Mistral (written as ``llama``) and Qwen2;
   f16, bf16 or q8_0. Anything else is refused with the list of what is supported.
4. **Ollama**: a Modelfile whose TEMPLATE is the chat template translated to a Go template (derived by
   rendering the Jinja template with marker messages and checked against it), with stop tokens.
5. **Push**: ``HfApi.upload_folder`` of the merged folder (or the adapter) with the model card.

Outputs are all-or-nothing: each is written to a hidden temporary sibling and renamed into place only
when every requested output is complete; any failure (a full disk, an unwritable path, Ctrl-C) removes
them and says what and where.

Progress is a stream of JSON objects (one per line in the child process)::

    {"type": "stage", "stage": "merge", "message": "merging the adapter into the base"}
    {"type": "progress", "stage": "gguf", "done": 12, "total": 38, "message": "blk.3.attn_q.weight"}
    {"type": "warning", "message": "..."}
    {"type": "done", "outputs": {"merged": "...", "gguf": "...", "modelfile": "...", "ollama_command": "..."}}
    {"type": "error", "summary": "...", "problems": [...], "hint": "..."}
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import Problem, UserError
from ..core.export_plan import (
    ADAPTER_FILES,
    GGUF_ARCHITECTURES,
    TOKENIZER_FILES,
    ExportPlan,
    human_bytes,
    unsupported_architecture,
)

Reporter = Callable[[dict[str, Any]], None]

# Files of a checkpoint or model folder that are training state, never part of an exported model.
_TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json",
                   "scaler.pt", "COMPLETE", "README.md", "checkpoint-is-incomplete.txt"}


# --- progress ------------------------------------------------------------------------------------------
class Progress:
    """Emits progress events to a callback; keeps the warnings for the final report."""

    def __init__(self, sink: Reporter | None = None) -> None:
        self.sink = sink or (lambda event: None)
        self.warnings: list[str] = []

    def stage(self, stage: str, message: str) -> None:
        self.sink({"type": "stage", "stage": stage, "message": message})

    def progress(self, stage: str, done: int, total: int, message: str = "") -> None:
        self.sink({"type": "progress", "stage": stage, "done": done, "total": total, "message": message})

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.sink({"type": "warning", "message": message})


# --- all-or-nothing outputs -------------------------------------------------------------------------
class Staging:
    """Temporary siblings for each output, renamed into place together by :meth:`commit`.

    An output inside another one (a GGUF inside the merged or Ollama folder) is written inside that
    folder's temporary copy. :meth:`abort` removes every temporary and any parent folder it created.
    """

    def __init__(self, force: bool) -> None:
        self.force = force
        self.entries: list[tuple[Path, Path, bool]] = []  # (final, temp, is_dir)
        self.created_parents: list[Path] = []
        self.committed = False

    def _make_parents(self, path: Path) -> None:
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self.created_parents.append(folder)

    def _temp_name(self, final: Path) -> Path:
        return final.with_name(f".{final.name}.partial-{os.getpid()}")

    def add_dir(self, final: Path) -> Path:
        self._make_parents(final)
        temp = self._temp_name(final)
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        self.entries.append((final, temp, True))
        return temp

    def path_for(self, final: Path) -> Path:
        """Where to write ``final`` now: inside a staged folder, or a temp file beside it."""
        for staged_final, temp, is_dir in self.entries:
            if is_dir:
                with contextlib.suppress(ValueError):
                    return temp / final.relative_to(staged_final)
        self._make_parents(final)
        temp = self._temp_name(final)
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        self.entries.append((final, temp, False))
        return temp

    def commit(self) -> None:
        """Move every output into place; replaced old outputs are removed only after all renames."""
        old: list[tuple[Path, Path]] = []
        done: list[tuple[Path, Path, bool]] = []
        try:
            for final, temp, is_dir in self.entries:
                if not temp.exists():
                    continue
                if final.exists() or final.is_symlink():
                    if not self.force:
                        raise UserError(f"{final} appeared while exporting", hint="--force replaces it")
                    aside = final.with_name(f".{final.name}.old-{os.getpid()}")
                    os.replace(final, aside)
                    old.append((final, aside))
                os.replace(temp, final)
                done.append((final, temp, is_dir))
        except BaseException:
            for final, temp, _ in reversed(done):
                with contextlib.suppress(OSError):
                    os.replace(final, temp)
            for final, aside in reversed(old):
                with contextlib.suppress(OSError):
                    os.replace(aside, final)
            raise
        self.committed = True
        for _, aside in old:
            _remove(aside)
        for final, _, _ in self.entries:
            _fsync_dir(final.parent)

    def abort(self) -> None:
        if self.committed:
            return
        for _, temp, _ in self.entries:
            _remove(temp)
        for folder in reversed(self.created_parents):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# numpy's tofile reports a short write (the disk filled up) without an errno.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def _errno_of(exc: BaseException) -> int | None:
    """The OS error behind an exception, also when a library wrapped it in its own type (safetensors, torch)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current.errno
        text = str(current)
        if "No space left on device" in text or "os error 28" in text or _SHORT_WRITE.search(text):
            return errno.ENOSPC
        if "Permission denied" in text or "os error 13" in text:
            return errno.EACCES
        if "Read-only file system" in text or "os error 30" in text:
            return errno.EROFS
        current = current.__cause__ or current.__context__
    return None


def write_failure(exc: BaseException, what: str, where: Path) -> UserError:
    code = _errno_of(exc)
    if code == errno.ENOSPC:
        return UserError(
            f"Export failed: the disk is full while writing the {what} to {where}; the partial output was removed",
            hint="free some space or choose a destination on another disk, then export again",
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the file system is read-only" if code == errno.EROFS else "permission denied"
        return UserError(
            f"Export failed: cannot write the {what} to {where} ({reason}); the partial output was removed",
            hint="choose a folder you can write to",
        )
    text = str(exc).strip()
    detail = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    return UserError(f"Export failed while writing the {what} to {where}: {detail}; the partial output was removed")


def check_free_space(needs: list[tuple[str, Path, int]]) -> None:
    """Refuse early when a destination's disk cannot hold what will be written there."""
    by_device: dict[int, tuple[Path, int, list[str]]] = {}
    for what, dest, size in needs:
        probe = dest.parent
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        try:
            dev = probe.stat().st_dev
        except OSError:
            continue
        where, total, labels = by_device.get(dev, (probe, 0, []))
        by_device[dev] = (where, total + size, [*labels, what])
    for where, total, labels in by_device.values():
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            continue
        margin = 16 * 1024 * 1024
        if free < total + margin:
            raise UserError(
                f"Not enough disk space for the {' and '.join(labels)} at {where}: "
                f"needs about {human_bytes(total + margin)}, {human_bytes(free)} free",
                hint="free some space or choose a destination on another disk; nothing was written",
            )


# --- the export ---------------------------------------------------------------------------------------
@dataclass
class Loaded:
    model: Any
    tokenizer: Any


def run_export(plan: ExportPlan, sink: Reporter | None = None) -> dict[str, Any]:
    """Do the export the plan describes. Returns the outputs; raises :class:`UserError` on failure."""
    progress = Progress(sink)
    started = time.time()
    staging = Staging(force=plan.force)
    outputs: dict[str, Any] = {}
    facts = run_facts(plan)
    loaded: Loaded | None = None
    current = ("export", Path(plan.merged or plan.gguf or plan.ollama or plan.run_path))
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
            outputs["merged"] = plan.merged
        if plan.ollama:
            staging.add_dir(Path(plan.ollama))
        if plan.gguf:
            current = ("GGUF file", Path(plan.gguf))
            assert loaded is not None
            target = staging.path_for(Path(plan.gguf))
            target.parent.mkdir(parents=True, exist_ok=True)
            outputs["gguf_bytes"] = write_gguf(loaded.model, loaded.tokenizer, target, plan.gguf_type, progress,
                                               name=plan.run_id, description=_one_line_card(facts))
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
            outputs["ollama_command"] = f"ollama create {plan.ollama_name} -f {_shell_quote(str(modelfile_final))}"
        current = ("export", Path(plan.merged or plan.gguf or plan.ollama or plan.run_path))
        staging.commit()
    except UserError:
        staging.abort()
        raise
    except BaseException as exc:
        staging.abort()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if _errno_of(exc) is not None:
            raise write_failure(exc, current[0], current[1]) from exc
        raise
    finally:
        loaded = None

    if plan.push_to_hub:
        outputs["hub_url"] = push_to_hub(plan, facts, progress)
    outputs["seconds"] = round(time.time() - started, 2)
    outputs["warnings"] = progress.warnings
    progress.sink({"type": "done", "outputs": outputs})
    return outputs


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _space_needs(plan: ExportPlan, loaded: Loaded) -> list[tuple[str, Path, int]]:
    params = list(loaded.model.state_dict().values())
    merged_bytes = sum(t.numel() * t.element_size() for t in params)
    needs = []
    if plan.merged:
        needs.append(("merged folder", Path(plan.merged), merged_bytes))
    if plan.gguf:
        numel = sum(t.numel() for t in params)
        per = {"f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32}[plan.gguf_type]
        needs.append(("GGUF file", Path(plan.gguf), int(numel * per)))
    return needs


def _check_gguf_arch(plan: ExportPlan, model: Any) -> None:
    if plan.gguf and model.config.model_type not in GGUF_ARCHITECTURES:
        raise unsupported_architecture(model.config.model_type)


# --- loading and merging ----------------------------------------------------------------------------
def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").exists() or (folder / "tokenizer_config.json").exists()


def load_merged(plan: ExportPlan, progress: Progress) -> Loaded:
    """The model to export, in memory: base + adapter merged, or the full fine-tune."""
    import torch  # noqa: F401 - imported here so the failure is clear when the ML stack is missing
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    source = Path(plan.source)
    common = {"trust_remote_code": plan.trust_remote_code, "dtype": "auto"}
    if plan.is_full:
        progress.stage("load", f"loading the fine-tuned model from {source}")
        model = AutoModelForCausalLM.from_pretrained(str(source), **common)
    else:
        progress.stage("load", f"loading the base model {plan.base_model}")
        try:
            base = AutoModelForCausalLM.from_pretrained(plan.base_model, revision=plan.base_revision, **common)
        except OSError as exc:
            raise UserError(
                f"Cannot load the base model {plan.base_model}: {str(exc).splitlines()[0]}",
                hint="the export loads the base named in the run's config.json; it must be on disk or in the hub cache",
            ) from None
        progress.stage("merge", f"merging the {plan.source_label} into the base")
        model = merge_adapter(base, source)
    model.eval()
    tok_source = str(source) if _has_tokenizer(source) else plan.base_model
    tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=plan.trust_remote_code)
    return Loaded(model=model, tokenizer=tokenizer)


def merge_adapter(base: Any, adapter_dir: Path) -> Any:
    """Merge a saved LoRA adapter into ``base`` (in the base's dtype). NaN/Inf in the adapter is refused."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(
            f"The adapter in {adapter_dir} does not fit the base model: {str(exc).splitlines()[0]}",
            hint="was the run trained on a different base model than its config.json names?",
        ) from None
    try:
        return peft_model.merge_and_unload(safe_merge=True)
    except ValueError as exc:
        if "NaN" in str(exc) or "nan" in str(exc).lower():
            raise UserError(
                f"The adapter in {adapter_dir} contains NaN/Inf weights; merging it would break the model",
                hint="export an earlier checkpoint with --checkpoint N",
            ) from None
        raise


# --- run facts and the model card --------------------------------------------------------------------
CARD_METRICS = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def run_facts(plan: ExportPlan) -> dict[str, Any]:
    """What the model card says: config, steps, final metrics (from events.jsonl, up to the exported step)."""
    from ..core import events as ev
    from ..core.runs import Run

    run = Run(plan.run_path)
    config = run.config()
    try:
        events = ev.read_events(run.events_path)
    except OSError:
        events = []
    limit = plan.step
    metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    summary: dict[str, float] = {}
    steps = 0
    # File order: a resumed attempt's values come after (and replace) the ones it superseded.
    for event in events:
        step = event.get("step")
        if not isinstance(step, int) or (limit is not None and step > limit):
            continue
        values = event.get("metrics") if isinstance(event.get("metrics"), dict) else {}
        if event.get("type") == ev.LOG and event.get("summary"):
            summary.update({k: float(v) for k, v in values.items() if isinstance(v, (int, float))})
        elif event.get("type") == ev.LOG:
            steps = step
            metrics.update({k: float(v) for k, v in values.items() if k in CARD_METRICS and isinstance(v, (int, float))})
        elif event.get("type") == ev.EVAL:
            eval_metrics.update({k: float(v) for k, v in values.items() if isinstance(v, (int, float))
                                 and k.startswith("eval_") and k.split("_", 1)[1].split("/")[0] in ("loss", "rewards")})
    if limit is None and "train_loss" in summary:
        metrics["mean training loss"] = summary["train_loss"]
    ordered = {k: metrics[k] for k in (*CARD_METRICS, "mean training loss") if k in metrics}
    return {"config": config.model_dump(mode="json"), "steps": limit if limit is not None else (steps or run.raw_status().step),
            "metrics": ordered, "eval_metrics": eval_metrics, "run_id": plan.run_id, "source_label": plan.source_label}


def _base_label(plan: ExportPlan) -> str:
    if plan.base_model_spec == "sample":
        return "the dpo-tui bundled sample model (tiny-chat)"
    return plan.base_model_spec


def _one_line_card(facts: dict[str, Any]) -> str:
    c = facts["config"]
    return (f"DPO fine-tune ({c['loss_type']}, beta {c['beta']}) of {c['model']} on {c['dataset']}, "
            f"{facts['steps']} steps, exported by dpo-tui from run {facts['run_id']}")


def model_card(plan: ExportPlan, facts: dict[str, Any], kind: str) -> str:
    """README.md for the merged folder (``kind`` = merged) or the adapter (``kind`` = adapter)."""
    from ..core.config import looks_like_hub_id

    c = facts["config"]
    front = ["---"]
    if looks_like_hub_id(c["model"]):
        front.append(f"base_model: {c['model']}")
    front.append(f"library_name: {'peft' if kind == 'adapter' else 'transformers'}")
    if looks_like_hub_id(c["dataset"]):
        front += ["datasets:", f"- {c['dataset']}"]
    front += ["tags:", "- dpo", "- trl", "- dpo-tui"]
    if c["method"] != "full":
        front.append("- lora")
    front.append("---")
    what = {"merged": "Merged weights (the LoRA adapter merged into the base model)",
            "adapter": "The LoRA adapter", "model": "The fully fine-tuned model"}[kind]
    rows = [
        ("base model", _base_label(plan)),
        ("dataset", c["dataset"] if c["dataset"] != "sample" else "the dpo-tui bundled sample preferences"),
        ("method", c["method"]),
        ("β (beta)", c["beta"]),
        ("loss type", c["loss_type"]),
    ]
    if c["method"] != "full":
        rows += [("LoRA rank", c["lora_rank"]), ("LoRA alpha", c["lora_alpha"]),
                 ("LoRA targets", ", ".join(c["lora_target_modules"]))]
    rows += [
        ("learning rate", c["learning_rate"]),
        ("steps", facts["steps"]),
        ("batch size × accumulation", f"{c['per_device_batch_size']} × {c['gradient_accumulation']}"),
        ("max length", c["max_length"]),
        ("weights", facts["source_label"]),
        ("run", facts["run_id"]),
    ]
    lines = front + [
        "",
        f"# {facts['run_id']}",
        "",
        f"{what}: a DPO fine-tune of {_base_label(plan)}, trained and exported with dpo-tui "
        "(TRL DPOTrainer + PEFT).",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
    ]
    if facts["metrics"] or facts["eval_metrics"]:
        lines += ["## Final metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in facts["metrics"].items()]
        lines += [f"| {k} | {v:.4g} |" for k, v in facts["eval_metrics"].items()]
        lines.append("")
    if kind == "adapter":
        lines += ["## Use", "", "```python", "from peft import AutoPeftModelForCausalLM",
                  "model = AutoPeftModelForCausalLM.from_pretrained(\"<this repo or folder>\")", "```", ""]
    else:
        lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "model = AutoModelForCausalLM.from_pretrained(\"<this repo or folder>\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"<this repo or folder>\")", "```", ""]
    return "\n".join(lines)


def save_merged(plan: ExportPlan, loaded: Loaded, folder: Path, facts: dict[str, Any]) -> None:
    """Write the merged model (or copy the full fine-tune), the tokenizer and the card into ``folder``."""
    if plan.is_full:
        _copy_model_folder(Path(plan.source), folder)
    else:
        loaded.model.save_pretrained(str(folder), max_shard_size="5GB")
    if not _has_tokenizer(folder):
        loaded.tokenizer.save_pretrained(str(folder))
    generation = getattr(loaded.model, "generation_config", None)
    if generation is not None and not (folder / "generation_config.json").exists():
        generation.save_pretrained(str(folder))
    (folder / "README.md").write_text(model_card(plan, facts, "model" if plan.is_full else "merged"), encoding="utf-8")


def _copy_model_folder(source: Path, dest: Path) -> None:
    for item in source.iterdir():
        if item.name in _TRAINING_STATE or item.name.startswith(".") or item.is_dir():
            continue
        shutil.copy2(item, dest / item.name)


# --- GGUF ------------------------------------------------------------------------------------------
@dataclass
class GGUFTensorPlan:
    name: str
    hf_name: str
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    nbytes: int
    transform: str = ""  # "", "permute_q", "permute_k"


def write_gguf(model: Any, tokenizer: Any, path: Path, out_type: str, progress: Progress,
               name: str = "", description: str = "") -> int:
    """Write ``model`` + ``tokenizer`` as a GGUF file at ``path``. Returns its size in bytes."""
    import gguf
    import numpy as np
    import torch

    config = model.config
    model_type = config.model_type
    if model_type not in GGUF_ARCHITECTURES:
        raise unsupported_architecture(model_type)
    arch_name = GGUF_ARCHITECTURES[model_type]
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch_name]
    if getattr(config, "mlp_bias", False):
        raise UserError(f"Cannot write a GGUF for this {model_type} model: it has MLP biases (mlp_bias=true), "
                        "which llama.cpp's llama architecture does not load")
    progress.stage("gguf", f"writing GGUF ({out_type}) to the {arch_name} architecture")

    n_layers = config.num_hidden_layers
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    hidden = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // n_head
    vocab_size = config.vocab_size

    writer = gguf.GGUFWriter(None, arch_name)
    qtypes = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
              "q8_0": gguf.GGMLQuantizationType.Q8_0}
    ftypes = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}

    # General and architecture metadata.
    writer.add_name(name or "dpo-tui export")
    if description:
        writer.add_description(description)
    writer.add_file_type(int(ftypes[out_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(vocab_size)
    if arch_name == "llama":
        writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = _rope_settings(config)
    writer.add_rope_freq_base(float(rope["theta"]))
    rope_freqs = _add_rope_scaling(writer, gguf, rope, head_dim, np)

    # Tokenizer.
    add_tokenizer_metadata(writer, gguf, tokenizer, vocab_size, progress)

    # Tensors: names, types and sizes first (header), then the data one tensor at a time.
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    name_map = gguf.get_tensor_name_map(arch, n_layers)
    plans: list[GGUFTensorPlan] = []
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"Cannot write a GGUF: no llama.cpp name for tensor '{hf_name}' of this {model_type} model",
                            hint="the model has parts llama.cpp's " + arch_name + " architecture does not know")
        shape = tuple(int(d) for d in tensor.shape)
        if len(shape) == 1 or out_type == "f32":
            qtype = gguf.GGMLQuantizationType.F32
        else:
            qtype = qtypes[out_type]
            if qtype == gguf.GGMLQuantizationType.Q8_0 and shape[-1] % 32 != 0:
                qtype = gguf.GGMLQuantizationType.F16  # llama.cpp does the same for rows that do not fit blocks
        transform = ""
        if arch_name == "llama" and ".attn_q." in gguf_name:
            transform = "permute_q"
        elif arch_name == "llama" and ".attn_k." in gguf_name:
            transform = "permute_k"
        plans.append(GGUFTensorPlan(gguf_name, hf_name, shape, qtype, _gguf_nbytes(gguf, shape, qtype), transform))
    if rope_freqs is not None:
        plans.append(GGUFTensorPlan("rope_freqs.weight", "", tuple(rope_freqs.shape), gguf.GGMLQuantizationType.F32,
                                    int(rope_freqs.nbytes)))

    for p in plans:
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.nbytes, raw_dtype=p.qtype)

    try:
        _write_gguf_data(writer, gguf, np, torch, state, plans, rope_freqs, path, n_head, n_kv, progress)
    finally:
        writer.close()
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    return path.stat().st_size


def _write_gguf_data(writer: Any, gguf: Any, np: Any, torch: Any, state: dict[str, Any], plans: list[GGUFTensorPlan],
                     rope_freqs: Any, path: Path, n_head: int, n_kv: int, progress: Progress) -> None:
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = len(plans)
    for i, p in enumerate(plans, 1):
        if p.hf_name:
            with torch.no_grad():
                data = state[p.hf_name].detach().to(torch.float32).cpu().numpy()
        else:
            data = rope_freqs
        if p.transform == "permute_q":
            data = permute_rows(data, n_head, n_head)
        elif p.transform == "permute_k":
            data = permute_rows(data, n_head, n_kv)
        if p.qtype == gguf.GGMLQuantizationType.F32:
            out = np.ascontiguousarray(data, dtype=np.float32)
        elif p.qtype == gguf.GGMLQuantizationType.F16:
            out = np.ascontiguousarray(data.astype(np.float16))
        else:
            out = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), p.qtype)
        writer.write_tensor_data(out)
        progress.progress("gguf", i, total, p.name)


def permute_rows(weights: Any, n_head: int, n_head_kv: int) -> Any:
    """llama.cpp's row order for Q/K of Llama-family models (rotary pairs interleaved per head).

    Hugging Face stores each head's rotary halves one after the other; llama.cpp's rope expects
    them interleaved. transformers' GGUF loader applies the inverse when reading the file back.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _gguf_nbytes(gguf: Any, shape: tuple[int, ...], qtype: Any) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows * (shape[-1] // block) * type_size


def _rope_settings(config: Any) -> dict[str, Any]:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(params, dict):
        params = {}
    theta = params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    rope_type = params.get("rope_type") or params.get("type") or "default"
    return {"theta": theta, "type": rope_type, "params": params,
            "max_positions": int(getattr(config, "max_position_embeddings", 0) or 0)}


def _add_rope_scaling(writer: Any, gguf: Any, rope: dict[str, Any], head_dim: int, np: Any) -> Any:
    """Rope scaling metadata (linear, yarn) or llama 3's per-dimension factors tensor. Others are refused."""
    kind, params = rope["type"], rope["params"]
    if kind in ("default", None):
        return None
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(params["factor"]))
        return None
    if kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(params["factor"]))
        original = params.get("original_max_position_embeddings") or rope["max_positions"]
        writer.add_rope_scaling_orig_ctx_len(int(original))
        return None
    if kind == "llama3":
        # Per-dimension divisors of the rotary frequencies (what transformers' llama3 rope computes).
        factor = float(params["factor"])
        low = float(params.get("low_freq_factor", 1.0))
        high = float(params.get("high_freq_factor", 4.0))
        old_ctx = float(params.get("original_max_position_embeddings", 8192))
        inv_freq = 1.0 / (rope["theta"] ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
        wavelen = 2 * np.pi / inv_freq
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        smooth = (old_ctx / wavelen - low) / (high - low)
        factors = np.where(wavelen < high_wavelen, 1.0,
                           np.where(wavelen > low_wavelen, factor, 1.0 / ((1 - smooth) / factor + smooth)))
        return factors.astype(np.float32)
    raise UserError(f"Cannot write a GGUF: rope scaling '{kind}' is not supported (supported: linear, yarn, llama3)",
                    hint="export --merged DIR and convert it with llama.cpp's convert_hf_to_gguf.py")


# --- the tokenizer in GGUF --------------------------------------------------------------------------
def _known_splits() -> dict[str, str]:
    """Pre-tokenizer split regex → llama.cpp pre-tokenizer name."""
    names: dict[str, str] = {}
    preferred = {"qwen2": "qwen2", "llama3": "llama-bpe"}
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # pragma: no cover - older transformers
        return names
    for pre_name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
        names.setdefault(regex, preferred.get(pre_name, pre_name))
    for pre_name, canonical in preferred.items():
        if pre_name in GGUF_PRE_TOKENIZER_SPLITS:
            names[GGUF_PRE_TOKENIZER_SPLITS[pre_name]] = canonical
    return names


def _pre_tokenizer_name(tok_json: dict[str, Any], progress: Progress) -> str:
    pre = tok_json.get("pre_tokenizer") or {}
    items = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    splits = [p for p in items if p.get("type") == "Split"]
    byte_level = [p for p in items if p.get("type") == "ByteLevel"]
    if not splits and byte_level and byte_level[0].get("use_regex", True):
        return "gpt-2"
    if len(splits) == 1:
        pattern = (splits[0].get("pattern") or {}).get("Regex")
        name = _known_splits().get(pattern or "")
        if name:
            return name
    progress.warn("the tokenizer's pre-tokenizer is not one llama.cpp knows by name; the GGUF says 'default', "
                  "so llama.cpp may split text slightly differently than transformers")
    return "default"


def add_tokenizer_metadata(writer: Any, gguf: Any, tokenizer: Any, vocab_size: int, progress: Progress) -> None:
    """Vocabulary, merges, token types, special ids, add-BOS/EOS flags and the chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("Cannot write a GGUF: the tokenizer has no tokenizer.json (fast tokenizer) to read the vocabulary from")
    tok_json = json.loads(backend.to_str())
    model = tok_json.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(f"Cannot write a GGUF: tokenizer type '{model.get('type')}' is not supported (supported: BPE)")
    spm = bool(model.get("byte_fallback"))
    vocab: dict[str, int] = model.get("vocab") or {}
    added = {int(t["id"]): t for t in tok_json.get("added_tokens") or []}
    id_to_token = {i: t for t, i in vocab.items()}
    for i, t in added.items():
        id_to_token[i] = t["content"]
    highest = max(id_to_token) if id_to_token else -1
    if highest >= vocab_size:
        raise UserError(
            f"Cannot write a GGUF: the tokenizer has token id {highest} but the model's embedding has {vocab_size} rows",
            hint="the tokenizer gained tokens without resizing the model's embeddings",
        )
    raw_merges = model.get("merges") or []
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw_merges]
    unk = getattr(tokenizer, "unk_token", None)

    tokens: list[str] = []
    types: list[int] = []
    scores: list[float] = []
    merge_rank = {}
    if spm:
        for rank, merge in enumerate(merges):
            merge_rank.setdefault(merge.replace(" ", ""), rank)
    for i in range(vocab_size):
        text = id_to_token.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            scores.append(-1000.0)
            continue
        tokens.append(text)
        info = added.get(i)
        if spm and text == unk:
            types.append(gguf.TokenType.UNKNOWN)
        elif info is not None and info.get("special"):
            types.append(gguf.TokenType.CONTROL)
        elif info is not None:
            types.append(gguf.TokenType.USER_DEFINED)
        elif spm and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
        scores.append(-float(merge_rank[text]) if text in merge_rank else 0.0)

    if spm:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        if merges:
            writer.add_token_merges(merges)
        writer.add_add_space_prefix(_adds_space_prefix(tok_json))
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(_pre_tokenizer_name(tok_json, progress))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)

    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("pad_token_id", writer.add_pad_token_id), ("unk_token_id", writer.add_unk_token_id)):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int) and 0 <= value < vocab_size:
            add(value)
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    writer.add_add_bos_token(bool(probe) and bos is not None and probe[0] == bos)
    writer.add_add_eos_token(bool(probe) and eos is not None and probe[-1] == eos)
    template = getattr(tokenizer, "chat_template", None)
    if template:
        writer.add_chat_template(template)
    else:
        progress.warn("the tokenizer has no chat template; the GGUF carries none")


def _adds_space_prefix(tok_json: dict[str, Any]) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") in ("first", "always"):
                return True
            if node.get("type") == "Prepend" and node.get("prepend") == "\u2581":
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(tok_json.get("normalizer")) or walk(tok_json.get("pre_tokenizer"))


# --- Ollama -----------------------------------------------------------------------------------------
@dataclass
class ChatShape:
    """A role-marker chat template, cut into the literal text around each message."""

    head: str  # before the first message when it is a system message (usually BOS or nothing)
    default_head: str  # extra text before the first message when it is not a system message (a default system prompt)
    system: tuple[str, str] | None
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation: str  # the generation prompt after the last user message

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        out = [self.head]
        if messages and messages[0]["role"] != "system":
            out.append(self.default_head)
        for i, m in enumerate(messages):
            last = i == len(messages) - 1
            if m["role"] == "system":
                assert self.system is not None
                out += [self.system[0], m["content"], self.system[1]]
            elif m["role"] == "user":
                out += [self.user[0], m["content"], self.user[1]]
                if last and add_generation_prompt:
                    out.append(self.generation)
            else:
                out += [self.assistant[0], m["content"]]
                if not last or not add_generation_prompt:
                    out.append(self.assistant[1])
        return "".join(out)


_MARK = {"s": "\ue000SYSTEM\ue001", "u1": "\ue000USER1\ue001", "a1": "\ue000ASSISTANT1\ue001",
         "u2": "\ue000USER2\ue001", "a2": "\ue000ASSISTANT2\ue001", "u3": "\ue000USER3\ue001"}


def chat_shape(tokenizer: Any) -> ChatShape | None:
    """Derive the template's literal pieces by rendering marker messages; None when it is not role-marker shaped."""
    if not getattr(tokenizer, "chat_template", None):
        return None

    def render(msgs: list[dict[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    u1, a1, u2 = ({"role": "user", "content": _MARK["u1"]}, {"role": "assistant", "content": _MARK["a1"]},
                  {"role": "user", "content": _MARK["u2"]})
    try:
        no_gen = render([u1, a1, u2], False)
        with_gen = render([u1, a1, u2], True)
        one_turn = render([u1, a1], False)
    except Exception:  # noqa: BLE001 - any template failure means "cannot translate"
        return None
    if not with_gen.startswith(no_gen):
        return None
    generation = with_gen[len(no_gen):]
    try:
        i_u1, i_a1, i_u2 = (no_gen.index(_MARK[k]) for k in ("u1", "a1", "u2"))
        j_a1 = one_turn.index(_MARK["a1"])
    except ValueError:
        return None
    t0 = no_gen[:i_u1]
    t1 = no_gen[i_u1 + len(_MARK["u1"]):i_a1]
    t2 = no_gen[i_a1 + len(_MARK["a1"]):i_u2]
    user_suffix = no_gen[i_u2 + len(_MARK["u2"]):]
    assistant_suffix = one_turn[j_a1 + len(_MARK["a1"]):]
    if not (t1.startswith(user_suffix) and t2.startswith(assistant_suffix)):
        return None
    assistant_prefix = t1[len(user_suffix):]
    user_prefix = t2[len(assistant_suffix):]
    if not t0.endswith(user_prefix):
        return None
    head_no_system = t0[: len(t0) - len(user_prefix)]

    system = None
    head = head_no_system
    default_head = ""
    with contextlib.suppress(Exception):
        s = {"role": "system", "content": _MARK["s"]}
        with_system = render([s, u1, a1, u2], False)
        i_s = with_system.index(_MARK["s"])
        rest = no_gen[len(t0) - len(user_prefix):]  # from the first user prefix on
        if with_system.endswith(rest):
            before, after = with_system[:i_s], with_system[i_s + len(_MARK["s"]):len(with_system) - len(rest)]
            bos = getattr(tokenizer, "bos_token", None) or ""
            head = bos if bos and before.startswith(bos) and head_no_system.startswith(bos) else ""
            system = (before[len(head):], after)
            default_head = head_no_system[len(head):]
    shape = ChatShape(head, default_head, system, (user_prefix, user_suffix), (assistant_prefix, assistant_suffix),
                      generation)
    return shape if _shape_matches(shape, render) else None


def _shape_matches(shape: ChatShape, render: Callable[[list[dict[str, str]], bool], str]) -> bool:
    """Check the cut-up template against the real one on a few conversations."""
    u = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! How can I help?"},
         {"role": "user", "content": "Tell me a joke.\nA short one."}, {"role": "assistant", "content": "No."},
         {"role": "user", "content": "ok"}]
    cases: list[tuple[list[dict[str, str]], bool]] = [(u[:1], True), (u[:3], True), (u[:2], False), (u, True)]
    if shape.system is not None:
        s = [{"role": "system", "content": "Be brief."}]
        cases += [(s + u[:1], True), (s + u, True)]
    try:
        return all(shape.render(msgs, gen) == render(msgs, gen) for msgs, gen in cases)
    except Exception:  # noqa: BLE001
        return False


def go_quote(text: str) -> str:
    """A Go string literal for ``text`` (the quote itself as \\x22 so a Modelfile's \"\"\" never appears)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append("\\x22")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _lit(text: str) -> str:
    return "{{ " + go_quote(text) + " }}" if text else ""


def go_template(shape: ChatShape, strip_bos: str | None) -> str:
    """An Ollama (Go text/template) TEMPLATE that renders ``.Messages`` like the Jinja chat template."""
    head = shape.head
    if strip_bos and head.startswith(strip_bos):
        head = head[len(strip_bos):]
    lines = []
    if head or shape.default_head:
        inner = _lit(head)
        if shape.default_head:
            inner += '{{ if ne (index .Messages 0).Role "system" }}' + _lit(shape.default_head) + "{{ end }}"
        lines.append("{{- if .Messages }}" + inner + "{{ end }}")
    lines.append("{{- range $i, $_ := .Messages }}")
    lines.append("{{- $last := eq (len (slice $.Messages $i)) 1 }}")
    if shape.system is not None:
        lines.append('{{- if eq .Role "system" }}' + _lit(shape.system[0]) + "{{ .Content }}" + _lit(shape.system[1]))
        lines.append('{{- else if eq .Role "user" }}' + _lit(shape.user[0]) + "{{ .Content }}" + _lit(shape.user[1])
                     + "{{ if $last }}" + _lit(shape.generation) + "{{ end }}")
    else:
        lines.append('{{- if eq .Role "user" }}' + _lit(shape.user[0]) + "{{ .Content }}" + _lit(shape.user[1])
                     + "{{ if $last }}" + _lit(shape.generation) + "{{ end }}")
    lines.append('{{- else if eq .Role "assistant" }}' + _lit(shape.assistant[0]) + "{{ .Content }}"
                 + "{{ if not $last }}" + _lit(shape.assistant[1]) + "{{ end }}")
    lines.append("{{- end }}")
    lines.append("{{- end }}")
    return "\n".join(lines)


def stop_tokens(tokenizer: Any, shape: ChatShape | None) -> list[str]:
    """End-of-turn strings: the EOS token and the special tokens that close or open a turn."""
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    with contextlib.suppress(Exception):
        for token in tokenizer.added_tokens_decoder.values():
            if getattr(token, "special", False):
                specials.add(str(token))
    stops: list[str] = []
    eos = getattr(tokenizer, "eos_token", None)
    if eos:
        stops.append(eos)
    if shape is not None:
        for piece in (shape.assistant[1], shape.user[0]):
            for token in sorted(specials, key=lambda t: piece.find(t) if t in piece else 1 << 30):
                if token and token in piece and token not in stops and token != getattr(tokenizer, "bos_token", None):
                    stops.append(token)
    return stops


def modelfile_text(tokenizer: Any, gguf_path: Path, ollama_dir: Path, run_id: str, progress: Progress) -> str:
    try:
        rel = gguf_path.relative_to(ollama_dir)
        source = f"./{rel.as_posix()}"
    except ValueError:
        source = str(gguf_path)
    lines = [f"# Ollama Modelfile for the dpo-tui run {run_id}", f"FROM {source}", ""]
    shape = chat_shape(tokenizer)
    if shape is None:
        progress.warn("the chat template is not a simple role-marker template; the Modelfile has no TEMPLATE, "
                      "so Ollama will fall back to the template it detects in the GGUF (check replies)")
        lines.append("# The chat template could not be translated to a Go template; add a TEMPLATE here if needed.")
    else:
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        adds_bos = bool(probe) and tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id
        template = go_template(shape, tokenizer.bos_token if adds_bos else None)
        lines += [f'TEMPLATE """{template}"""', ""]
        if shape.system is None:
            progress.warn("the chat template has no system role; system messages are dropped in the Ollama template")
    for stop in stop_tokens(tokenizer, shape):
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


# --- push to hub ------------------------------------------------------------------------------------
def push_to_hub(plan: ExportPlan, facts: dict[str, Any], progress: Progress) -> str:
    """Upload the merged folder (or the adapter / full model) with its card. Returns the repo URL."""
    import tempfile

    from ..core.export_plan import check_hub_access

    token = check_hub_access()
    assert plan.push_to_hub
    progress.stage("push", f"uploading the {plan.push_source} to {plan.push_to_hub}")
    with tempfile.TemporaryDirectory(prefix="dpo-tui-push-") as tmp:
        if plan.merged:
            folder = Path(plan.merged)
        else:
            folder = Path(tmp)
            source = Path(plan.source)
            names = set(TOKENIZER_FILES) | (
                set(ADAPTER_FILES) if not plan.is_full else {p.name for p in source.iterdir()} - _TRAINING_STATE)
            for name in sorted(names):
                if (source / name).is_file():
                    shutil.copy2(source / name, folder / name)
            if not plan.is_full:
                _rewrite_adapter_base(folder / "adapter_config.json", plan)
            (folder / "README.md").write_text(model_card(plan, facts, "model" if plan.is_full else "adapter"),
                                              encoding="utf-8")
        return _upload(folder, plan, token)


def _rewrite_adapter_base(path: Path, plan: ExportPlan) -> None:
    """The adapter's recorded base path is from the training box; name the hub id when there is one."""
    from ..core.config import looks_like_hub_id

    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if looks_like_hub_id(plan.base_model_spec):
            data["base_model_name_or_path"] = plan.base_model_spec
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _upload(folder: Path, plan: ExportPlan, token: str) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()

    assert plan.push_to_hub
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    where = endpoint or "https://huggingface.co"
    try:
        repo = api.create_repo(plan.push_to_hub, private=plan.private, exist_ok=True, repo_type="model")
        repo_id = getattr(repo, "repo_id", None) or plan.push_to_hub
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=f"Upload {plan.run_id} ({plan.push_source}) from dpo-tui")
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear message
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if status in (401, 403):
            hint = "the token was refused: log in again with a token that has write access (`hf auth login`)"
        elif status is None:
            hint = f"check the network connection to {where} (and HF_ENDPOINT if you set it)"
        else:
            hint = None
        local = f"; the local export at {plan.merged} is complete" if plan.merged else ""
        raise UserError(f"Push to the hub repo {plan.push_to_hub} failed: {first}{local}", hint=hint) from None
    return f"{where.rstrip('/')}/{repo_id}"


# --- the child process ------------------------------------------------------------------------------
def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def _error_event(exc: UserError) -> dict[str, Any]:
    return {"type": "error", "summary": exc.summary, "hint": exc.hint,
            "problems": [p.__dict__ for p in exc.problems], "text": exc.render()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.export",
                                     description="Export a run (plan from dpo_tui.core.export_plan) with JSON-line progress.")
    parser.add_argument("--plan", required=True, help="plan JSON file ('-' = stdin)")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text(encoding="utf-8")
        plan = ExportPlan.from_json(text)
        run_export(plan, _emit)
    except UserError as exc:
        _emit(_error_event(exc))
        return 2
    except KeyboardInterrupt:
        _emit(_error_event(UserError("Export interrupted; the partial output was removed")))
        return 130
    except Exception as exc:  # noqa: BLE001 - reported as an event, traceback to stderr
        import traceback

        traceback.print_exc()
        _emit(_error_event(UserError(f"Export failed: {type(exc).__name__}: {exc}", problems=[Problem("internal error")])))
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
