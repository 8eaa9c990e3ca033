"""Pre-flight checks: everything that can be known wrong before a run folder exists.

The CLI (``train``, ``ladder``) and the console's launch call :func:`check_inputs`; each problem is a
:class:`UserError` naming the model, file, line or field and what to do, found in about a second
instead of after the trainer has loaded a model.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .config import RunConfig, looks_like_hub_id
from .errors import Problem, UserError
from .fsutil import JSON_ERRORS
from .hub import offline

if TYPE_CHECKING:
    from .data import DataReport
    from .models import ModelInfo


def visible_gpu_ids() -> list[int]:
    """NVML indices of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` narrows them). [] on CPU."""
    from .gpus import cuda_visible_ids, nvml_uuids

    uuids = nvml_uuids()
    if uuids is None and os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        return []
    return cuda_visible_ids(len(uuids) if uuids is not None else None, uuids)


def visible_gpu_count() -> int:
    return len(visible_gpu_ids())


def describe_ids(ids: list[int]) -> str:
    """``0–3`` for a contiguous run from 0, else ``4,5,7``."""
    if ids and ids == list(range(len(ids))) and len(ids) > 2:
        return f"0–{len(ids) - 1}"
    return ",".join(map(str, ids))


def check_inputs(config: RunConfig) -> None:
    """Pre-flight checks that need no ML library: model and dataset exist and are usable."""
    model = config.resolved_model()
    if config.is_sample() and not Path(model).is_dir():
        raise UserError(f"The bundled sample model is missing at {model}", hint="run `make sample` to rebuild sample_data/")
    info = check_model(config)  # config.json, tokenizer, weights, causal LM, remote code (an adapter is named as one)
    dataset = config.resolved_dataset()
    if not Path(dataset).exists() and not looks_like_hub_id(dataset):
        raise UserError(f"Dataset not found: {config.dataset}", hint="give a .jsonl/.json/.csv/.parquet file, a folder, or a hub id")
    check_devices(config)
    check_strategy(config)
    report = check_dataset(config)
    if report is not None and report.format == "conversational" and info is not None and not info.has_chat_template:
        raise UserError(
            f"The dataset {config.dataset} is conversational, but the tokenizer of {config.model} has no chat template; "
            "nothing was started",
            hint="use a chat/instruct model, or standard (prompt/chosen/rejected text) data",
        )
    if report is not None:
        check_room_for_a_response(config)


# Heads that are not causal language models (DPO trains a decoder-only LM).
NON_CAUSAL_HEADS = ("ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
                    "ForMultipleChoice", "ForNextSentencePrediction", "ForPreTraining", "ForImageClassification", "ForCTC")


def not_a_causal_lm(cfg: dict) -> str | None:
    archs = [a for a in cfg.get("architectures") or [] if isinstance(a, str)]
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return None
    name = archs[0] if archs else str(cfg.get("model_type") or "this model")
    if cfg.get("is_encoder_decoder"):
        return f"{name} is an encoder-decoder (sequence-to-sequence) model, not a causal language model"
    bad = [a for a in archs if a.endswith(NON_CAUSAL_HEADS)]
    return f"{bad[0]} is not a causal language model" if bad else None


def check_model(config: RunConfig) -> ModelInfo | None:
    """The base model has what the trainer loads (config, tokenizer, readable weights), is a causal LM, and
    ships no Python code unless the operator trusts it. A hub id is checked from the cache (or its config.json
    on the hub when online)."""
    from .models import inspect_model

    if config.is_sample():
        return None
    model = config.resolved_model()
    if Path(model).is_file():
        raise UserError(f"--model {config.model} is a file, not a model folder",
                        hint="point --model at the folder that holds config.json, the tokenizer and the weights")
    spec = model if Path(model).exists() or not config.model_revision else f"{model}@{config.model_revision}"
    info = inspect_model(spec)
    hint = "point --model at a Hugging Face model folder (config.json, tokenizer, *.safetensors) or a cached hub id"
    if info.is_adapter:
        raise UserError(f"{config.model} is a LoRA adapter, not a base model", hint=f"train on its base model ({info.base_model or '?'})")
    try:
        cfg = json.loads((Path(info.path) / "config.json").read_text(encoding="utf-8")) if info.path else {}
    except (OSError, *JSON_ERRORS):
        cfg = {}
    reason = not_a_causal_lm(cfg) if isinstance(cfg, dict) else None
    if reason:
        raise UserError(f"Cannot train on {config.model}: {reason}", hint="DPO here trains causal (decoder-only) language models (*ForCausalLM)")
    if info.error:
        raise UserError(f"Cannot train on {config.model}: {info.error}", hint=hint)
    if any(w.startswith("no weight files") for w in info.warnings):
        raise UserError(f"Cannot train on {config.model}: no weight files (*.safetensors or *.bin)", hint=hint)
    if isinstance(cfg, dict) and cfg.get("auto_map") and not config.trust_remote_code:
        raise UserError(
            f"{config.model} ships its own Python code (auto_map: {', '.join(sorted(set(map(str, cfg['auto_map'].values()))))})",
            hint="read that code; if you trust its authors, add --trust-remote-code (it runs with your permissions)",
        )
    return info


def check_dataset(config: RunConfig) -> DataReport | None:
    """Lint the data before a run exists: bad data is rejected with file, line and field (no GPU minute spent).

    Streaming and cheap (≥ 50k rows/s); the trainer runs the same loader again on the same file.
    """
    from .data import check_data

    dataset = config.resolved_dataset()
    if not Path(dataset).exists() and not offline("dataset"):
        return None  # a hub id, online: checked by the trainer once it is fetched (offline: from the cache, now)
    report = check_data(dataset, split=config.dataset_split, column_map=config.column_map)
    if report.errors:
        shown = report.errors[:5]
        more = len(report.errors) - len(shown)
        raise UserError(
            f"The dataset {config.dataset} has {len(report.errors)} kind(s) of error; nothing was started:",
            problems=[Problem(f.render(report.source)) for f in shown] + ([Problem(f"... and {more} more")] if more else []),
            hint=f"`dpo-tui data check {config.dataset}` shows the full report; `dpo-tui data convert --drop-bad` writes the usable rows",
        )
    return report


def check_room_for_a_response(config: RunConfig) -> None:
    """The trainer drops every row whose prompt alone has ``>= max_length`` tokens and fails when none is left
    ("num_samples should be a positive integer"). Tokenize as it does until one row keeps room for a response
    token: one batch for any sensible data, the whole set only when every prompt is too long."""
    from .data import iter_preference_rows
    from .tokenstats import ChatTokenizer, TemplateError

    try:
        tok = ChatTokenizer.from_model(config.resolved_model())
    except UserError:
        return  # no fast tokenizer.json here: the trainer's own tokenizer decides, and reports it
    limit = config.max_length
    rows = iter_preference_rows(config.resolved_dataset(), split=config.dataset_split, column_map=config.column_map)
    batch: list[dict] = []
    seen = 0
    shortest = None
    while True:
        item = next(rows, None)
        if item is not None:
            batch.append(item[1])
            if len(batch) < 256:
                continue
        for res in tok.prepare(batch):
            if isinstance(res, TemplateError):
                continue
            n = len(res.prompt_ids)
            if n < limit:
                return
            shortest = n if shortest is None else min(shortest, n)
        seen += len(batch)
        batch = []
        if item is None:
            break
    if shortest is None:
        return
    raise UserError(
        f"max_length {limit} leaves no room for a response: every one of the {seen} prompts in {config.dataset} has "
        f">= {limit} tokens (the shortest has {shortest}), so the trainer would drop every row; nothing was started",
        problems=[Problem(f"max_length {limit} <= shortest prompt ({shortest} tokens)", field="max_length")],
        hint=f"raise --max-length above {shortest} (`dpo-tui data check {config.dataset} --model {config.model} "
        "--max-length N` shows the token lengths)",
    )


def check_devices(config: RunConfig, visible: list[int] | int | None = None, what: str = "this run") -> None:
    """The GPUs a run asks for are usable here. ``visible``: NVML indices (or a count, meaning GPUs
    0…n-1), by default :func:`visible_gpu_ids`. GPU ids are NVML's, as the picker shows them.

    With no GPU visible, any ``nproc`` is fine (CPU processes over gloo) but GPU ids are not.
    """
    ids = visible_gpu_ids() if visible is None else list(range(visible)) if isinstance(visible, int) else list(visible)
    if not ids:
        if config.gpus:
            raise UserError(
                f"{what} asks for GPU {','.join(map(str, config.gpus))}, but no GPU is visible here",
                hint="drop --gpus to train on the CPU, or check `nvidia-smi` and CUDA_VISIBLE_DEVICES",
            )
        return
    missing = [g for g in config.gpus if g not in ids]
    if missing:
        raise UserError(
            f"{what} asks for GPU {','.join(map(str, missing))}, but only GPUs {describe_ids(ids)} are visible here",
            hint="pick GPUs that exist and that CUDA_VISIBLE_DEVICES allows (`nvidia-smi -L`; ctrl+o on the experiment screen)",
        )
    if config.nproc > len(ids) and not config.gpus:
        count = len(ids)
        raise UserError(
            f"{what} needs {config.nproc} processes, one per GPU, but {count} GPU{'s are' if count != 1 else ' is'} visible here",
            hint=f"use --nproc {count} or fewer (or expose more GPUs with CUDA_VISIBLE_DEVICES)",
        )


def check_strategy(config: RunConfig) -> None:
    """A multi-process strategy needs its library and (for DeepSpeed/FSDP) GPUs: say what to install."""
    if config.strategy == "ddp":
        return
    if config.strategy.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"strategy '{config.strategy}' needs DeepSpeed, which is not installed", hint="pip install 'dpo-tui[deepspeed]'")
    if visible_gpu_count() == 0:
        raise UserError(f"strategy '{config.strategy}' needs GPUs; on CPU only 'ddp' runs (over gloo)", hint="use --strategy ddp")


def rank_warning(config: RunConfig, hidden_size: int | None) -> str | None:
    """A LoRA rank at or above the model's hidden size adds no capacity (the update is already full rank)
    and costs memory: say so, without refusing (a deliberate experiment may want it)."""
    if config.method == "full" or not hidden_size or config.lora_rank < hidden_size:
        return None
    return (f"lora_rank {config.lora_rank} is not below the model's hidden size {hidden_size}: a rank that high "
            f"adds no capacity over full fine-tuning and costs memory; ranks 8–64 are usual")


def rank_note(config: RunConfig | None, hidden_size: int | None) -> str:
    """:func:`rank_warning` in a few words, for the console's line under the VRAM bar ("" when fine)."""
    if config is None or rank_warning(config, hidden_size) is None:
        return ""
    return f"lora rank {config.lora_rank} ≥ hidden size {hidden_size}: no capacity gained, more memory"


def preflight_warnings(config: RunConfig) -> list[str]:
    """What is allowed but probably a mistake, for the operator to read before the run starts."""
    from .models import inspect_model

    try:
        info = inspect_model(config.resolved_model())
    except Exception:  # noqa: BLE001 - a warning pass never blocks a run that check_inputs let through
        return []
    warning = rank_warning(config, info.hidden_size)
    return [warning] if warning else []
