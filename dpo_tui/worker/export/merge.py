"""The model to export, in memory and on disk: the base with the LoRA adapter merged in, or a full fine-tune.

The base is loaded from the run's config (never from the path the adapter recorded, which is from the
training machine), in its own dtype.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import UserError, first_line
from ...core.export_plan import ExportPlan
from ...core.model_card import model_card
from .staging import Progress

# Files of a checkpoint or model folder that are training state, never part of an exported model.
TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json",
                  "scaler.pt", "COMPLETE", "README.md", "checkpoint-is-incomplete.txt"}


@dataclass
class Loaded:
    model: Any
    tokenizer: Any


def has_tokenizer(folder: Path) -> bool:
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
                f"Cannot load the base model {plan.base_model}: {first_line(exc)}",
                hint="the export loads the base named in the run's config.json; it must be on disk or in the hub cache",
            ) from None
        progress.stage("merge", f"merging the {plan.source_label} into the base")
        model = merge_adapter(base, source)
    model.eval()
    tok_source = str(source) if has_tokenizer(source) else plan.base_model
    tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=plan.trust_remote_code)
    return Loaded(model=model, tokenizer=tokenizer)


def merge_adapter(base: Any, adapter_dir: Path) -> Any:
    """Merge a saved LoRA adapter into ``base`` (in the base's dtype). NaN/Inf in the adapter is refused."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(
            f"The adapter in {adapter_dir} does not fit the base model: {first_line(exc)}",
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


def save_merged(plan: ExportPlan, loaded: Loaded, folder: Path, facts: dict[str, Any]) -> None:
    """Write the merged model (or copy the full fine-tune), the tokenizer and the card into ``folder``."""
    if plan.is_full:
        _copy_model_folder(Path(plan.source), folder)
    else:
        loaded.model.save_pretrained(str(folder), max_shard_size="5GB")
    if not has_tokenizer(folder):
        loaded.tokenizer.save_pretrained(str(folder))
    generation = getattr(loaded.model, "generation_config", None)
    if generation is not None and not (folder / "generation_config.json").exists():
        generation.save_pretrained(str(folder))
    (folder / "README.md").write_text(model_card(plan, facts, "model" if plan.is_full else "merged"), encoding="utf-8")


def _copy_model_folder(source: Path, dest: Path) -> None:
    for item in source.iterdir():
        if item.name in TRAINING_STATE or item.name.startswith(".") or item.is_dir():
            continue
        shutil.copy2(item, dest / item.name)
