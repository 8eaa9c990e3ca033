"""The trainer: ``python -m dpo_tui.worker.train RUN_DIR [--resume-from CHECKPOINT]``.

Runs TRL's ``DPOTrainer`` on the frozen ``config.json`` of a run folder and reports only through
that folder: ``events.jsonl`` (one event per logged step, checkpoints, resources, warnings and
exactly one terminal event), ``status.json`` (state, heartbeat) and checkpoints. Started by the
supervisor (``worker/supervise.py``) in a detached session.

Behaviour the console relies on (docs: trl-dpo-facts.md §5–§8, failure-modes.md):

- LoRA through ``peft_config``: the reference is the adapter-disabled base, no second copy.
- Weights load in the configured dtype (TRL would load a string model in fp32).
- Metrics are logged every step with ``logging_nan_inf_filter`` off; a non-finite loss, reward,
  log-prob or gradient norm stops the run as ``failed``/``nan`` without saving over good checkpoints.
- SIGTERM/SIGINT set a flag; at the next step boundary a checkpoint is saved and the run ends
  ``stopped`` (exit 3). SIGHUP is ignored (the run outlives the terminal).
- CUDA OOM becomes ``failed``/``oom`` with the phase and concrete suggestions; any other error
  becomes ``failed`` with a kind and one line; the full traceback goes to trainer.log only.
- The final adapter is written to ``adapter.partial/`` and renamed to ``adapter/`` with a
  ``COMPLETE`` marker, so a reader never sees half an adapter.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ..core import events as ev
from ..core.config import RunConfig
from ..core.fsutil import fsync_dir
from ..core.runs import EXIT_FAILED, EXIT_FINISHED, EXIT_STOPPED, Run, host_name, process_start_time

# How often the heartbeat (status.json) and resource events are written.
HEARTBEAT_S = float(os.environ.get("DPO_TUI_HEARTBEAT_S", "5"))
# Metrics whose non-finite value means the run is broken.
GUARDED_PREFIXES = ("loss", "grad_norm", "rewards/", "logps/", "logits/")


class StopRequested:
    """Set from signal handlers, read by the training callback.

    The handler only assigns attributes. It must take no lock (``threading.Event.set`` takes one): a
    second signal can interrupt the first handler inside the lock, and the nested handler then waits
    forever for a lock its own thread holds, so the trainer hangs until a stop escalates to SIGKILL.
    """

    def __init__(self) -> None:
        self._requested = False
        self.signal_name = ""

    def install(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.signal_name = signal.Signals(signum).name
            self._requested = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, handler)
        # The run must outlive the terminal that started it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def request(self) -> None:
        """Another rank asked to stop (see ``stop_agreed``)."""
        self._requested = True

    @property
    def requested(self) -> bool:
        return self._requested


class RunFailed(Exception):
    """A failure with a kind and a hint, reported as the run's terminal ``failed`` event."""

    def __init__(self, kind: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


def process_rank() -> tuple[int, int]:
    """(rank, world size) under ``accelerate launch``/torchrun; (0, 1) for a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class Reporter:
    """Owns the run folder's writes for this attempt: events, status, heartbeat.

    Only rank 0 writes; on other ranks every method is a no-op, so there is one writer per run.
    """

    def __init__(self, run: Run, attempt: int) -> None:
        self.run = run
        self.attempt = attempt
        self.rank, self.world_size = process_rank()
        self.writer = ev.EventWriter(run.events_path, attempt=attempt) if self.rank == 0 else None
        self._lock = threading.Lock()
        self.step = 0
        self.max_steps: int | None = None
        self.phase = "starting"
        self.state = "starting"
        self.identity: dict[str, Any] = {}
        """Who runs this attempt (pids with start times, host): in every status write, so a status.json
        deleted mid-run comes back with them and liveness checks keep working."""

    def emit(self, type_: str, **fields: Any) -> None:
        if self.writer is None:
            return
        with self._lock:
            self.writer.emit(type_, **fields)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def status(self, **fields: Any) -> None:
        if self.rank != 0:
            return
        with self._lock:
            if "state" in fields:
                self.state = fields["state"]
            elif not self.run.status_path.exists():
                fields["state"] = self.state  # rebuilt after a deletion (an existing file keeps e.g. "stopping")
            for key, value in self.identity.items():
                fields.setdefault(key, value)
            fields.setdefault("heartbeat", time.time())
            fields.setdefault("phase", self.phase)
            fields.setdefault("step", self.step)
            if self.max_steps is not None:
                fields.setdefault("max_steps", self.max_steps)
            try:
                self.run.update_status(**fields)
            except OSError as exc:  # a full disk must not kill training; the next beat retries
                print(f"dpo-tui: cannot write status.json: {exc}", file=sys.stderr)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.status()


def resource_snapshot() -> dict[str, Any]:
    import psutil
    import torch

    info: dict[str, Any] = {"rss": psutil.Process().memory_info().rss, "cpu_percent": psutil.cpu_percent(interval=None)}
    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            devices.append(
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "allocated": torch.cuda.memory_allocated(i),
                    "reserved": torch.cuda.memory_reserved(i),
                    "peak": torch.cuda.max_memory_reserved(i),
                    "used": total - free,
                    "total": total,
                }
            )
        try:
            devices_util = [torch.cuda.utilization(d["index"]) for d in devices]
            for d, u in zip(devices, devices_util, strict=False):
                d["util"] = u
        except Exception:  # noqa: BLE001 - needs pynvml; utilisation is optional
            pass
    info["devices"] = devices
    return info


class Heartbeat(threading.Thread):
    """Rewrites the heartbeat and emits ``resource`` events every few seconds, so a hang is visible."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.reporter = reporter
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                self.reporter.status()
                self.reporter.emit(ev.RESOURCE, step=self.reporter.step, **resource_snapshot())
            except Exception as exc:  # noqa: BLE001 - never let monitoring kill training
                print(f"dpo-tui: heartbeat failed: {exc}", file=sys.stderr)


def pick_precision(config: RunConfig) -> str:
    import torch

    if config.precision != "auto":
        return config.precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def oom_hint(config: RunConfig, phase: str) -> str:
    tips = []
    if config.per_device_batch_size > 1:
        tips.append(
            f"halve the batch (per_device_batch_size={config.per_device_batch_size // 2}, "
            f"gradient_accumulation={config.gradient_accumulation * 2})"
        )
    if not config.gradient_checkpointing:
        tips.append("turn on gradient_checkpointing")
    tips.append(f"lower max_length (now {config.max_length})")
    if config.method == "full":
        tips.append("use method 'lora' (no reference copy, no full optimizer state)")
    elif config.method == "lora":
        tips.append("use method 'qlora' (4-bit base)")
    return f"out of GPU memory while {phase}: " + "; ".join(tips) + ". `dpo-tui estimate` predicts the fit."


def stop_agreed(stop: StopRequested, world_size: int) -> bool:
    """Whether any rank was asked to stop. Every rank must stop at the same step boundary, or the
    ones still training hang in their next collective, so the flag is all-reduced (MAX) each step."""
    if world_size <= 1:
        return stop.requested
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return stop.requested
    flag = torch.tensor([1 if stop.requested else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and not stop.requested:
        stop.request()
    return bool(flag.item())


# What one trainer.log line shows per logged step, in this order: (metric, label, format).
LOG_LINE_METRICS = (
    ("loss", "loss", ".4g"), ("rewards/margins", "margin", ".4g"), ("rewards/accuracies", "acc", ".2f"),
    ("rewards/chosen", "chosen", ".4g"), ("rewards/rejected", "rejected", ".4g"), ("grad_norm", "grad", ".4g"),
    ("learning_rate", "lr", ".2e"),
)


def log_line(step: int, max_steps: int | None, logs: dict[str, Any]) -> str:
    """One readable trainer.log line for a logged step (events.jsonl keeps every metric).

    Replaces transformers' PrinterCallback, which printed the whole metrics dict as a Python repr:
    unreadable in ``tail -f trainer.log`` and in the monitor's log pane.
    """
    if "train_runtime" in logs:
        return (f"done: {logs.get('train_runtime', 0):.1f} s, {logs.get('train_steps_per_second', 0):.2f} steps/s, "
                f"mean train loss {logs.get('train_loss', float('nan')):.4f}")
    prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
    parts = [f"step {step}/{max_steps}" if max_steps else f"step {step}"]
    if prefix:
        parts.append("eval")
    for key, label, spec in LOG_LINE_METRICS:
        value = logs.get(prefix + key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:{spec}}")
    return "  ".join(parts)


def build_callbacks(reporter: Reporter, stop: StopRequested, config: RunConfig) -> list[Any]:
    """The TrainerCallbacks that stream events, guard against NaN, stop gracefully and pace checkpoints."""
    from transformers import TrainerCallback

    # Fault injection for the test suite (documented in docs/troubleshooting.md, off by default).
    fault_nan_step = int(os.environ.get("DPO_TUI_FAULT_NAN_AT_STEP", "0") or 0)
    fault_step_delay = float(os.environ.get("DPO_TUI_FAULT_STEP_DELAY", "0") or 0)

    class ConsoleCallback(TrainerCallback):
        def __init__(self) -> None:
            self.save_every = 1
            self.last_save_t = time.time()
            self.nan_keys: list[str] = []
            self.stopped_by_signal = False

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            reporter.max_steps = state.max_steps
            self.save_every = max(1, math.ceil(state.max_steps * config.save_fraction))
            self.last_save_t = time.time()
            reporter.phase = "training"
            reporter.status(state="running", max_steps=state.max_steps, step=state.global_step)
            if stop.requested:
                control.should_training_stop = True

        def on_step_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            # Fault injection for the test suite: poison one trainable weight so the next loss is NaN.
            if fault_nan_step and state.global_step + 1 == fault_nan_step and model is not None:
                import torch

                with torch.no_grad():
                    for param in model.parameters():
                        if param.requires_grad:
                            param.fill_(float("nan"))
                            break

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            reporter.step = state.global_step
            if fault_step_delay:
                time.sleep(fault_step_delay)
            if stop_agreed(stop, reporter.world_size) and not self.nan_keys:
                self.stopped_by_signal = True
                control.should_save = True
                control.should_training_stop = True
                return
            due_by_steps = state.global_step % self.save_every == 0 and state.global_step < state.max_steps
            due_by_time = config.save_minutes > 0 and time.time() - self.last_save_t > config.save_minutes * 60
            if (due_by_steps or due_by_time) and state.global_step < state.max_steps:
                control.should_save = True

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not state.is_world_process_zero or not logs:
                return
            logs = dict(logs)  # other callbacks may pop keys from the shared dict
            print(log_line(state.global_step, state.max_steps, logs), flush=True)
            if "train_runtime" in logs:  # the end-of-training summary
                reporter.emit(ev.LOG, step=state.global_step, epoch=state.epoch, metrics=logs, summary=True)
                return
            reporter.emit(ev.LOG, step=state.global_step, epoch=round(state.epoch or 0.0, 4), metrics=logs)
            bad = [
                k for k, v in logs.items()
                if k.startswith(GUARDED_PREFIXES) and isinstance(v, (int, float)) and not math.isfinite(v)
            ]
            if bad:
                self.nan_keys = bad
                control.should_training_stop = True
                control.should_save = False  # never save a poisoned model over the good checkpoints

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            self.last_save_t = time.time()
            if not state.is_world_process_zero:
                return
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (path / "COMPLETE").write_text(f"{state.global_step}\n")
            fsync_dir(path)
            reporter.emit(ev.CHECKPOINT, step=state.global_step, path=str(path.relative_to(reporter.run.path)))
            reporter.status()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero and metrics:
                reporter.emit(ev.EVAL, step=state.global_step, metrics=dict(metrics))
            if stop.requested:
                control.should_training_stop = True

    return [ConsoleCallback()]


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
    if precision in ("bf16", "fp16") and not torch.cuda.is_available():
        reporter.emit(ev.WARNING, source="config", message=f"{precision} requested but no GPU: training in fp32 on CPU")
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
        raise RunFailed("config", f"cannot load the tokenizer of {config.model}: {str(exc).splitlines()[0]}", "check the model folder has tokenizer files") from None
    if train_ds is not None and len(train_ds) and isinstance(train_ds[0]["prompt"], list) and not tokenizer.chat_template:
        # TRL would fail on this only after loading the model; say it before spending the time.
        raise RunFailed(
            "config", f"the dataset is conversational but {config.model} has no chat template",
            "use a chat model, or convert the data to the standard prompt/chosen/rejected strings",
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise RunFailed("config", f"cannot load the model {config.model}: {str(exc).splitlines()[0]}", "check the model folder (config.json, weights)") from None
    if stop.requested:
        return None

    peft_config = None
    if config.method in ("lora", "qlora"):
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
    install_save_fault(trainer)
    return trainer


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


def save_final(trainer: Any, run: Run, config: RunConfig, rank: int = 0) -> Path:
    """Write the final adapter (or full model) to a partial folder, mark it complete, then rename into place."""
    final = run.model_dir if config.method == "full" else run.adapter_dir
    partial = final.with_name(final.name + ".partial")
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))  # collective under DeepSpeed/FSDP: every rank calls it
    if rank != 0:
        return final
    time.sleep(float(os.environ.get("DPO_TUI_FAULT_FINAL_SAVE_DELAY", "0") or 0))  # test hook: kill mid final save
    (partial / "COMPLETE").write_text("ok\n")
    fsync_dir(partial)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    fsync_dir(run.path)
    return final


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def train(run: Run, resume_from: Path | None) -> int:
    """Run one attempt. Returns the process exit code; every outcome is written to the run folder."""
    config = run.config()
    status = run.raw_status()
    attempt = (status.attempt or 0) + 1
    reporter = Reporter(run, attempt)
    stop = StopRequested()
    stop.install()
    reporter.identity = {"pid": os.getpid(), "pid_start": process_start_time(os.getpid()), "pgid": os.getpgid(0), "host": host_name(),
                         "supervisor_pid": status.supervisor_pid, "supervisor_start": status.supervisor_start, "attempt": attempt}
    reporter.status(state="starting", started_at=status.started_at or time.time(), exit_code=None, kind=None, hint=None, message=None)
    if resume_from is not None:
        step = int(resume_from.name.rsplit("-", 1)[-1])
        reporter.step = step
        reporter.emit(ev.RESUMED, step=step, checkpoint=str(resume_from))
    heartbeat = Heartbeat(reporter)
    if reporter.rank == 0:
        heartbeat.start()
    trainer = None
    try:
        import torch

        torch.manual_seed(config.seed)
        reporter.set_phase("loading data")
        train_ds, eval_ds, n_rows = load_data(config, reporter)
        if stop.requested:
            return finish_stopped(reporter, None)
        trainer = build_trainer(config, reporter, stop, train_ds, eval_ds, run)
        if trainer is None or stop.requested:
            return finish_stopped(reporter, None)
        kept = len(trainer.train_dataset)
        if kept < len(train_ds):
            dropped = len(train_ds) - kept
            reporter.emit(ev.WARNING, source="data", code="prompt-too-long",
                          message=f"TRL dropped {dropped} of {len(train_ds)} pairs whose prompt alone reaches max_length={config.max_length}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        callback = next(cb for cb in trainer.callback_handler.callbacks if hasattr(cb, "nan_keys"))
        # `started` goes out before the first step so the monitor shows max_steps at once.
        world = reporter.world_size
        steps_per_epoch = math.ceil(kept / (config.per_device_batch_size * config.gradient_accumulation * world))
        max_steps = config.max_steps if config.max_steps > 0 else math.ceil(steps_per_epoch * config.num_epochs)
        reporter.max_steps = max_steps
        reporter.emit(
            ev.STARTED, max_steps=max_steps, examples=kept, eval_examples=len(eval_ds) if eval_ds is not None else 0,
            world_size=world, device=device, precision=pick_precision(config) if device == "cuda" else "fp32",
            versions=library_versions(), resume_step=reporter.step if resume_from else None, **reporter.identity,
        )
        reporter.set_phase("training")
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if callback.nan_keys:
            raise RunFailed(
                "nan", f"non-finite {', '.join(callback.nan_keys[:4])} at step {reporter.step}",
                "lower the learning rate, use bf16 instead of fp16, or check the data; the last good checkpoint is kept",
            )
        if callback.stopped_by_signal:
            ckpt = run.checkpoints_dir / f"checkpoint-{reporter.step}"
            return finish_stopped(reporter, ckpt if ckpt.exists() else None)
        reporter.set_phase("saving")
        final = save_final(trainer, run, config, reporter.rank)
        if reporter.rank != 0:
            return EXIT_FINISHED
        history = trainer.state.log_history
        final_metrics = {k: v for k, v in (history[-2] if len(history) > 1 else {}).items() if isinstance(v, (int, float))}
        reporter.emit(ev.FINISHED, step=reporter.step, path=final.name, metrics=final_metrics)
        reporter.status(state="finished", exit_code=EXIT_FINISHED, ended_at=time.time(), phase="done")
        return EXIT_FINISHED
    except RunFailed as exc:
        return finish_failed(reporter, exc.kind, exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, with the traceback in trainer.log only
        traceback.print_exc()
        kind, message, hint = classify(exc, config, reporter.phase)
        if kind == "disk":
            # A save that hit a full disk leaves an unusable checkpoint; removing it frees the room
            # needed to record the failure (status.json, the terminal event).
            for ckpt in run.checkpoints():
                if not ckpt.complete:
                    shutil.rmtree(ckpt.path, ignore_errors=True)
        return finish_failed(reporter, kind, message, hint)
    finally:
        heartbeat.stopped.set()
        reporter.close()


def classify(exc: BaseException, config: RunConfig, phase: str) -> tuple[str, str, str]:
    """Map an exception to (kind, one-line message, hint)."""
    import errno

    from ..core.errors import UserError

    if isinstance(exc, UserError):  # the operator's input (a dataset not found, offline, ...): no class name
        return ("data" if phase == "loading data" else "config"), exc.summary, exc.hint or "details in trainer.log"
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return "oom", f"CUDA out of memory ({phase})", oom_hint(config, phase)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in text:
        return "disk", f"disk full while {phase}", "free space in the runs root; older checkpoints are intact"
    if name in ("DatasetGenerationError", "StopIteration") or "num_samples=0" in text:
        return "data", f"dataset could not be used: {text}", f"run `dpo-tui data check {config.dataset}`"
    if isinstance(exc, (ValueError, TypeError)) and phase in ("loading model", "tokenizing"):
        return "config", f"{name}: {text}", "check the model and settings; details in trainer.log"
    return "crash", f"{name}: {text}", "details in trainer.log"


def finish_stopped(reporter: Reporter, checkpoint: Path | None) -> int:
    rel = str(checkpoint.relative_to(reporter.run.path)) if checkpoint else None
    hint = f"`dpo-tui resume {reporter.run.id}` continues from {checkpoint.name}" if checkpoint else "stopped before the first step"
    reporter.emit(ev.STOPPED, step=reporter.step, checkpoint=rel, reason="signal", hint=hint)
    reporter.status(state="stopped", exit_code=EXIT_STOPPED, ended_at=time.time(), phase="done", hint=hint, kind=None)
    return EXIT_STOPPED


def finish_failed(reporter: Reporter, kind: str, message: str, hint: str) -> int:
    print(f"dpo-tui: run failed ({kind}): {message}", file=sys.stderr)
    try:
        reporter.emit(ev.FAILED, step=reporter.step, kind=kind, message=message, hint=hint, phase=reporter.phase)
    except OSError:
        pass  # disk full: the supervisor records the outcome in status.json
    reporter.status(state="failed", exit_code=EXIT_FAILED, ended_at=time.time(), kind=kind, message=message, hint=hint, phase="done")
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.train", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume-from", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    # transformers 5 repeats this deprecation on every step; it says nothing the operator can act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    run = Run(args.run_dir.resolve())
    return train(run, args.resume_from.resolve() if args.resume_from else None)


if __name__ == "__main__":
    sys.exit(main())
