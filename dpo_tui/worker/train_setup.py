"""What a training attempt loads: the precision, the preference data, the model and tokenizer, and TRL's trainer.

Loading errors the operator can fix become :class:`~.train_failures.RunFailed` with a hint; the
torch/transformers/TRL imports stay inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ..core import events as ev
from ..core.config import RunConfig
from ..core.errors import first_line
from ..core.runs import Run
from .train_failures import RunFailed
from .train_report import Reporter, StopRequested, build_callbacks


def pick_precision(config: RunConfig) -> str:
    import torch

    if config.precision != "auto":
        return config.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def cpu_bf16_supported() -> bool:
    """Whether torch can train in bf16 on this CPU: a bf16 matmul and its backward run."""
    import torch

    try:
        a = torch.ones(2, 2, dtype=torch.bfloat16, requires_grad=True)
        (a @ a).sum().backward()
    except RuntimeError:
        return False
    return True


def torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_data(config: RunConfig, reporter: Reporter) -> tuple[Any, Any, int]:
    """Load through the project's one loader (the same rows `dpo-tui data check` reports on)."""
    from datasets import Dataset

    from ..core.data import load_preference_data

    loaded = load_preference_data(config.resolved_dataset(), split=config.dataset_split, column_map=config.column_map)
    report = loaded.report
    if report.errors:
        first = report.errors[0]
        where = f" (line {first.lines[0]})" if getattr(first, "lines", None) else ""
        raise RunFailed(
            "data",
            f"{len(report.errors)} error(s) in the dataset, first: {first.message}{where}",
            f"run `dpo-tui data check {config.dataset}` for the full report",
        )
    for warning in report.warnings:
        reporter.emit(ev.WARNING, source="data", code=warning.code, message=warning.message, lines=list(warning.lines)[:5], count=warning.count)
    rows = loaded.rows
    if not rows:
        raise RunFailed("data", "the dataset has no usable pairs", f"run `dpo-tui data check {config.dataset}`")
    train_rows, eval_rows = rows, []
    if config.eval_fraction > 0 and len(rows) >= 4:
        import random

        order = list(range(len(rows)))
        random.Random(config.seed).shuffle(order)
        n_eval = max(1, int(len(rows) * config.eval_fraction))
        eval_idx = set(order[:n_eval])
        train_rows = [r for i, r in enumerate(rows) if i not in eval_idx]
        eval_rows = [r for i, r in enumerate(rows) if i in eval_idx]
    train = Dataset.from_list(train_rows)
    evald = Dataset.from_list(eval_rows) if eval_rows else None
    return train, evald, len(rows)


def build_trainer(config: RunConfig, reporter: Reporter, stop: StopRequested, train_ds: Any, eval_ds: Any, run: Run) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    precision = pick_precision(config)
    if precision == "fp16" and not torch.cuda.is_available():
        # CPU kernels and the grad scaler are not made for fp16; bf16 needs no scaler and torch runs it on any CPU.
        reporter.emit(ev.WARNING, source="config", message="fp16 requested but no GPU: training in fp32 on CPU")
        precision = "fp32"
    elif precision == "bf16" and not torch.cuda.is_available() and not cpu_bf16_supported():
        reporter.emit(ev.WARNING, source="config", message="bf16 requested but this CPU build of torch cannot run it: training in fp32")
        precision = "fp32"
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise RunFailed("config", "this GPU does not support bf16", "set precision = 'fp16' (or 'auto')")
    model_path = config.resolved_model()
    reporter.set_phase("loading model")
    load_kwargs: dict[str, Any] = {"dtype": torch_dtype(precision), "trust_remote_code": config.trust_remote_code}
    if config.model_revision:
        load_kwargs["revision"] = config.model_revision
    if config.method == "qlora":
        if not torch.cuda.is_available():
            raise RunFailed("config", "method 'qlora' needs a CUDA GPU (bitsandbytes 4-bit)", "use method 'lora' on CPU")
        try:
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise RunFailed("config", "method 'qlora' needs bitsandbytes", "pip install 'dpo-tui[qlora]'") from None
        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(precision if precision != "fp32" else "bf16"),
            bnb_4bit_use_double_quant=True,
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.trust_remote_code, revision=config.model_revision)
    except Exception as exc:  # noqa: BLE001 - any loader error is a model problem for the operator
        raise RunFailed("config", f"cannot load the tokenizer of {config.model}: {first_line(exc)}", "check the model folder has tokenizer files") from None
    if train_ds is not None and len(train_ds) and isinstance(train_ds[0]["prompt"], list) and not tokenizer.chat_template:
        # TRL would fail on this only after loading the model; say it before spending the time.
        raise RunFailed(
            "config", f"the dataset is conversational but {config.model} has no chat template",
            "use a chat model, or convert the data to the standard prompt/chosen/rejected strings",
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
    except Exception as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise RunFailed("config", f"cannot load the model {config.model}: {first_line(exc)}", "check the model folder (config.json, weights)") from None
    if stop.requested:
        return None

    peft_config = None
    if config.init_adapter:
        model = load_init_adapter(model, model_path, config)
    elif config.method in ("lora", "qlora"):
        from peft import LoraConfig

        targets: Any = "all-linear" if config.lora_target_modules == ["all-linear"] else list(config.lora_target_modules)
        peft_config = LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=targets, task_type="CAUSAL_LM",
        )
        if targets != "all-linear":
            names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
            missing = [t for t in targets if t not in names]
            if missing:
                linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)} - {"lm_head"})
                raise RunFailed("config", f"lora_target_modules {missing} not in the model", f"valid names: {', '.join(linear)}")

    on_cpu = not torch.cuda.is_available()
    eval_every = config.eval_steps or None
    args = DPOConfig(
        output_dir=str(run.checkpoints_dir),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        max_length=config.max_length,
        optim=config.optimizer,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=on_cpu,
        gradient_checkpointing=config.gradient_checkpointing,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,
        save_strategy="no",  # our callback paces checkpoints (fraction of steps + wall time)
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=eval_every or max(1, math.ceil(max(1, config.max_steps) * config.save_fraction)) if eval_ds is not None else None,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        model_init_kwargs=None,
        trust_remote_code=config.trust_remote_code,
    )
    reporter.set_phase("tokenizing")
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=build_callbacks(reporter, stop, config),
    )
    # Our callback prints one readable line per log (log_line); the default printer's dict repr would double it.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if config.init_adapter:
        reference_is_base(trainer.model)
    install_save_fault(trainer)
    return trainer


def load_init_adapter(model: Any, model_path: str, config: RunConfig) -> Any:
    """The base with the previous run's adapter on it, trainable, for ``DPOTrainer`` without a ``peft_config``.

    The reference is the original base model, not the adapter this run starts from (:func:`reference_is_base`).
    The adapter's shape (rank, alpha, targets) is its own; only the dropout follows this run's config.
    """
    import json
    from pathlib import Path

    from peft import PeftConfig, PeftModel

    from .chat_io import RequestError
    from .chat_lora import check_adapter_base

    folder = Path(config.init_adapter)
    moved = "the adapter folder changed since the run was planned; plan the run again (`dpo-tui train --init-adapter ...`)"
    try:
        acfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        check_adapter_base(model, model_path, folder, acfg)
        peft_config = PeftConfig.from_pretrained(str(folder))
    except RequestError as exc:
        raise RunFailed("config", f"init_adapter: {exc.message}", f"start from an adapter trained on {config.model}") from None
    except (OSError, ValueError) as exc:
        raise RunFailed("config", f"init_adapter {folder}: {first_line(exc)}", moved) from None
    peft_config.lora_dropout = config.lora_dropout
    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    try:
        model = PeftModel.from_pretrained(model, str(folder), config=peft_config, is_trainable=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise RunFailed("config", f"init_adapter {folder}: cannot load the adapter: {first_line(exc)}", moved) from None
    if config.gradient_checkpointing:
        # Checkpointed blocks need an input that requires grad, or the frozen base gives the adapter no gradient.
        model.enable_input_require_grads()
    return model


def reference_is_base(model: Any) -> None:
    """Make the base model (adapter disabled) the reference of a run that started from an adapter.

    Given a PeftModel, TRL 1.16 copies its starting adapter into a frozen adapter named ``ref`` and uses
    that as the reference, which anchors round two on the round-one policy. dpo-tui anchors every round
    on the base instead (``docs/training.md`` says why); without a ``ref`` adapter TRL computes the
    reference with the adapters disabled. The optimizer does not exist yet, so nothing else holds the copy.
    """
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def install_save_fault(trainer: Any) -> None:
    """Test hook: pause a checkpoint save after the weights, before trainer_state.json, so a fault test can
    SIGKILL the trainer mid-save (``DPO_TUI_FAULT_SAVE_DELAY`` seconds; off unless set)."""
    delay = float(os.environ.get("DPO_TUI_FAULT_SAVE_DELAY", "0") or 0)
    if not delay:
        return
    original = trainer._save_optimizer_and_scheduler

    def slow_save(output_dir: str) -> None:
        time.sleep(delay)
        original(output_dir)

    trainer._save_optimizer_and_scheduler = slow_save
