"""The trainer: ``python -m dpo_tui.worker.train RUN_DIR [--resume-from CHECKPOINT]``.

Runs TRL's ``DPOTrainer`` on the frozen ``config.json`` of a run folder and reports only through
that folder: ``events.jsonl`` (one event per logged step, checkpoints, resources, warnings and
exactly one terminal event), ``status.json`` (state, heartbeat) and checkpoints. Started by the
supervisor (``worker/supervise.py``) in a detached session.

Behaviour the console relies on (``docs/design/trl-facts.md``, ``docs/design/processes.md``):

- LoRA through ``peft_config``: the reference is the adapter-disabled base, no second copy. A run
  with ``init_adapter`` hands TRL the base with that adapter loaded trainable; the reference is
  still the adapter-disabled base (``docs/training.md``).
- Weights load in the configured dtype (TRL would load a string model in fp32).
- Metrics are logged every step with ``logging_nan_inf_filter`` off; a non-finite loss, reward,
  log-prob or gradient norm stops the run as ``failed``/``nan`` without saving over good checkpoints.
- SIGTERM/SIGINT set a flag; at the next step boundary a checkpoint is saved and the run ends
  ``stopped`` (exit 3). SIGHUP is ignored (the run outlives the terminal).
- CUDA OOM becomes ``failed``/``oom`` with the phase and concrete suggestions; any other error
  becomes ``failed`` with a kind and one line; the full traceback goes to trainer.log only.
- The final adapter is written to ``adapter.partial/`` and renamed to ``adapter/`` with a
  ``COMPLETE`` marker, so a reader never sees half an adapter.

The pieces live beside it: :mod:`.train_report` (events, status, heartbeat, signals, the callback),
:mod:`.train_setup` (data, model, trainer) and :mod:`.train_failures` (what a failure is called);
their public names are re-exported here.
"""

# ruff: noqa: E402 - the early stop handler below must be installed before the other imports load
from __future__ import annotations

import signal

# A Stop can land while the imports below load (a second or more): remember it instead of dying of
# SIGTERM, so a stop right after ``train`` still ends the run ``stopped``. Only when run as the trainer:
# a test importing this module keeps its own handlers. The handler only appends (no lock, see
# StopRequested).
EARLY_SIGNALS: list[int] = []
if __name__ == "__main__":
    for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(_sig, lambda signum, _frame: EARLY_SIGNALS.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

import argparse
import contextlib
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..core import events as ev
from ..core.config import RunConfig
from ..core.fsutil import follow_umask, fsync_dir
from ..core.runs import EXIT_FINISHED, Run, host_name, process_start_time
from .train_failures import (
    RunFailed,
    classify,
    disk_full,
    make_reserve,
    oom_hint,
    release_reserve,
    remove_partial_checkpoints,
)
from .train_report import (
    GUARDED_PREFIXES,
    HEARTBEAT_S,
    LOG_LINE_METRICS,
    Heartbeat,
    Reporter,
    StopRequested,
    build_callbacks,
    finish_failed,
    finish_stopped,
    log_line,
    process_rank,
    resource_snapshot,
    stop_agreed,
)
from .train_setup import build_trainer, install_save_fault, load_data, pick_precision, torch_dtype

__all__ = [
    "GUARDED_PREFIXES", "HEARTBEAT_S", "LOG_LINE_METRICS", "Heartbeat", "Reporter", "RunFailed", "StopRequested",
    "build_callbacks", "build_trainer", "classify", "finish_failed", "finish_stopped", "install_save_fault",
    "library_versions", "load_data", "log_line", "main", "oom_hint", "pick_precision", "process_rank",
    "estimate_checkpoint_bytes", "resource_snapshot", "save_final", "stop_agreed", "torch_dtype", "train",
]


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
    follow_umask(partial)  # safetensors writes 0600; the run folder follows the umask
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
    status = run.writer_status()
    attempt = (status.attempt or 0) + 1
    reporter = Reporter(run, attempt)
    stop = StopRequested()
    stop.install()
    if EARLY_SIGNALS:
        stop.signal_name = signal.Signals(EARLY_SIGNALS[0]).name
        stop.request()
    if status.state == "stopping":  # stopped between the supervisor's launch and this process's handler
        stop.request()
    reporter.identity = {"pid": os.getpid(), "pid_start": process_start_time(os.getpid()), "pgid": os.getpgid(0), "host": host_name(),
                         "supervisor_pid": status.supervisor_pid, "supervisor_start": status.supervisor_start, "attempt": attempt}
    reporter.status(state="starting", started_at=status.started_at or time.time(), exit_code=None, kind=None, hint=None, message=None)
    if resume_from is not None:
        step = int(resume_from.name.rsplit("-", 1)[-1])
        reporter.step = step
        reporter.emit(ev.RESUMED, step=step, checkpoint=str(resume_from))
    if stop.requested:
        try:
            return finish_stopped(reporter, None)
        finally:
            reporter.close()
    heartbeat = Heartbeat(reporter)
    if reporter.rank == 0:
        make_reserve(run.path)
        heartbeat.start()
    trainer = None
    checkpoint_estimate = 0
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
        checkpoint_estimate = estimate_checkpoint_bytes(trainer)
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
            world_size=world, device=device, precision="bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",  # what build_trainer chose
            versions=library_versions(), resume_step=reporter.step if resume_from else None, **reporter.identity,
            **({"init_adapter": config.init_adapter, "init_adapter_run": config.init_adapter_run} if config.init_adapter else {}),
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
        # Judge a full disk first, while the partial checkpoint still shows how far the save got; then
        # free the reserve and that checkpoint, so the traceback, the terminal event and status.json fit.
        full = disk_full(exc, run, reporter.phase, checkpoint_estimate) if reporter.rank == 0 else None
        if full is not None:
            release_reserve(run.path)
            remove_partial_checkpoints(run)
        with contextlib.suppress(OSError):
            traceback.print_exc()
        kind, message, hint = full or classify(exc, config, reporter.phase)
        if kind == "disk" and reporter.rank == 0:
            remove_partial_checkpoints(run)
        return finish_failed(reporter, kind, message, hint)
    finally:
        heartbeat.stopped.set()
        reporter.close()
        if reporter.rank == 0:
            release_reserve(run.path)


def estimate_checkpoint_bytes(trainer: Any) -> int:
    """What one checkpoint takes, roughly: the trained weights in fp32 and Adam's two moments per weight,
    plus the tokenizer and config files saved beside them."""
    try:
        trained = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    except Exception:  # noqa: BLE001 - an estimate only
        return 0
    return trained * 4 * 3 + (1 << 20)


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
