"""``dpo-tui estimate``: predict a DPO run's peak GPU memory, and optionally measure it.

``dpo-tui estimate --model PATH_OR_ID_OR_CONFIG_JSON [--method lora|qlora|full] [--lora-rank R]
[--lora-targets M ...] [--batch-size B] [--max-length L] [--precision bf16|fp16|fp32]
[--gradient-checkpointing|--no-gradient-checkpointing] [--nproc N] [--dataset PATH] [--json] [--probe]``

Unset settings are what ``dpo-tui train`` would use (``core.run_defaults``: the sample preset for the
sample model, the run's own dataset for the padded length), and on a machine without a usable GPU the
run trains on the CPU, so the estimate counts tensors only and is compared with free RAM, as the
console's VRAM bar does. The estimate (``dpo_tui.core.vram``) is compared with the *free* memory of the chosen GPU(s);
when it does not fit, the command lists what would (a smaller batch, checkpointing, 4-bit, a
shorter max length, precomputed reference log-probs), each with its new estimate. ``--json``
prints ``{"total_bytes", "components", "fits", "suggestions", ...}``. ``--probe`` then runs two
real training steps on the longest padded batch and prints the measured peak beside the estimate
(on a machine without a GPU it says so and exits 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from ..core.errors import Problem, UserError

GiB = 1024**3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="predict the peak GPU memory of a DPO run (--probe measures it)",
        description="Predict the peak GPU memory per device of a DPO run, check it against free GPU memory, "
        "and say what would make it fit.",
    )
    p.add_argument("--model", required=True, metavar="PATH_OR_ID_OR_CONFIG_JSON",
                   help="a model folder, a hub id (org/name, from the cache or the hub's config.json), "
                        "a bare config.json, or 'sample'")
    p.add_argument("--config", metavar="FILE", help="start from a run config (TOML or JSON); flags override it")
    p.add_argument("--method", choices=("lora", "qlora", "full"), help="LoRA adapter, 4-bit base + LoRA, or full fine-tuning")
    p.add_argument("--lora-rank", type=int, metavar="R", help="LoRA rank (default 16)")
    p.add_argument("--lora-targets", nargs="+", metavar="MODULE",
                   help="modules with adapters: all-linear (default) or names such as q_proj v_proj")
    p.add_argument("--batch-size", type=int, metavar="B", help="pairs per device per step (DPO runs 2 × B sequences)")
    p.add_argument("--gradient-accumulation", type=int, metavar="N", help="micro-steps per optimizer step")
    p.add_argument("--max-length", type=int, metavar="L", help="token limit per prompt+completion (default 1024)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), help="weights and compute dtype (auto = bf16)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations in backward (default on)")
    p.add_argument("--optimizer", choices=("adamw_torch", "adamw_torch_fused", "adamw_8bit", "sgd", "adafactor"))
    p.add_argument("--precompute-ref-log-probs", action="store_true", default=None,
                   help="full fine-tuning: no reference copy in memory")
    p.add_argument("--nproc", type=int, metavar="N", help="training processes (one per GPU)")
    p.add_argument("--strategy", choices=("ddp", "zero2", "zero3", "zero3-offload", "fsdp"), help="multi-GPU strategy")
    p.add_argument("--gpus", metavar="I,J", help="GPU indices to check against (default: the first --nproc)")
    p.add_argument("--free-gib", type=float, metavar="GIB", help="compare against this much free memory instead of the GPUs'")
    p.add_argument("--dataset", metavar="PATH", help="preference data: its longest padded batch sets the length")
    p.add_argument("--split", default="train", help="dataset split (default train)")
    p.add_argument("--trl-version", metavar="X.Y", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--probe", action="store_true", help="also run two real training steps on the GPU and print the measured peak")
    p.set_defaults(func=cmd_estimate)


def _run_config(args: argparse.Namespace) -> Any:
    from ..core.config import load_config
    from ..core.run_defaults import default_config

    model = args.model
    if "@" in model and not os.path.exists(model):
        model = model.split("@", 1)[0]  # org/name@revision: the revision is for inspect_model only
    overrides: dict[str, Any] = {"model": model}
    flag_map = {
        "method": "method",
        "lora_rank": "lora_rank",
        "batch_size": "per_device_batch_size",
        "gradient_accumulation": "gradient_accumulation",
        "max_length": "max_length",
        "precision": "precision",
        "gradient_checkpointing": "gradient_checkpointing",
        "optimizer": "optimizer",
        "precompute_ref_log_probs": "precompute_ref_log_probs",
        "nproc": "nproc",
        "strategy": "strategy",
    }
    for flag, field in flag_map.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    if args.lora_targets:
        targets = [t.strip() for item in args.lora_targets for t in item.split(",") if t.strip()]
        overrides["lora_target_modules"] = targets
    if args.gpus:
        try:
            overrides["gpus"] = [int(x) for x in args.gpus.split(",") if x.strip()]
        except ValueError:
            raise UserError("bad --gpus", [Problem("expected comma-separated GPU indices, e.g. 0,1", field="--gpus")]) from None
    if args.dataset:
        overrides["dataset"] = args.dataset
    if args.config:
        return load_config(args.config, overrides)
    return default_config(overrides)  # what `dpo-tui train --model …` would run


def _model_info(spec: str) -> Any:
    from ..core import models

    info = models.inspect_model(spec)
    if info.is_adapter:
        base = f" (base: {info.base_model})" if info.base_model else ""
        raise UserError(f"{spec} is a LoRA adapter{base}", hint="estimate its base model instead")
    if not info.has_arch:
        raise UserError(f"Cannot estimate {info.name}: {info.error or 'model facts missing'}",
                        hint="pass a model folder with config.json, a config.json, or a hub id in the cache")
    return info


def padded_length_from_dataset(info: Any, config: Any, dataset: str, split: str = "train") -> tuple[int, dict[str, Any]]:
    """The longest padded batch (tokens per sequence) the collator would build from ``dataset``."""
    from pathlib import Path

    if not info.path or not Path(info.path).is_dir() or not (Path(info.path) / "tokenizer.json").is_file():
        raise UserError(
            f"{info.name} has no tokenizer.json here, so the dataset's token lengths cannot be measured",
            hint="drop --dataset to assume every batch fills --max-length, or point --model at a folder with its tokenizer",
        )
    from ..core.data import DataReport
    from ..core.tokenstats import ChatTokenizer, add_token_stats

    tokenizer = ChatTokenizer.from_dir(info.path)
    report = DataReport(source=dataset)
    result = add_token_stats(report, dataset, tokenizer, max_length=config.max_length,
                             batch_size=config.per_device_batch_size, split=split, column_map=config.column_map or None)
    padded = result.get("padded") or {}
    longest = padded.get("max")
    if not longest:
        raise UserError(f"{dataset}: no usable rows to measure", hint=f"check it with: dpo-tui data check {dataset}")
    return int(longest), result


def _local_dataset(info: Any, config: Any) -> str | None:
    """The run's own dataset when it is on this machine and the model's tokenizer is too: train pads
    batches to the longest pair, not to max_length, so that is the length the console estimates with."""
    from pathlib import Path

    dataset = config.resolved_dataset()
    if not Path(dataset).exists() or not info.path or not (Path(info.path) / "tokenizer.json").is_file():
        return None
    return dataset


def cmd_estimate(args: argparse.Namespace) -> int:
    from ..core import gpus, vram
    from ..core.run_defaults import estimate_device

    config = _run_config(args)
    info = _model_info(args.model)
    padded = None
    data_note = None
    dataset = args.dataset or _local_dataset(info, config)
    if dataset:
        padded, stats = padded_length_from_dataset(info, config, dataset, args.split)
        rows = stats.get("rows", 0)
        data_note = f"longest padded batch in {args.dataset or config.dataset}: {padded} tokens ({rows} pairs)"
    inv = gpus.inventory()
    free, device = estimate_device(inv, config)
    if args.free_gib is not None:
        free = int(args.free_gib * GiB)
        where = f"{args.free_gib:g} GiB free (given)"
    else:
        where = _where(inv, config)
    est = vram.estimate(info, config, padded_length=padded, free_bytes=free, trl_version=args.trl_version, device=device)
    if data_note:
        est.notes.insert(0, data_note)
    if args.json:
        probe_result = run_probe(info, config, est, inv, quiet=True) if args.probe else None
        out = est.to_json()
        out["model"] = {"name": info.name, "path": info.path, "param_count": info.param_count}
        if args.probe:
            out["probe"] = probe_result
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    sys.stdout.write(render_text(info, config, est, where) + "\n")
    if args.probe:
        sys.stdout.flush()
        probe_result = run_probe(info, config, est, inv)
        text = render_probe(est, probe_result)
        if text:
            sys.stdout.write(text + "\n")
    return 0


def _where(inv: Any, config: Any) -> str:
    if inv.cpu_only:
        return inv.describe()
    chosen = [g for g in inv.gpus if g.index in config.gpus] if config.gpus else inv.gpus[: max(1, config.nproc)]
    parts = []
    for g in chosen:
        users = f", in use by {len(g.processes)} process(es)" if g.processes else ""
        parts.append(f"GPU {g.index} {g.name}: {g.memory_free / GiB:.1f} GiB free of {g.memory_total / GiB:.1f}{users}")
    return "; ".join(parts) or inv.describe()


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GiB:.2f} GiB"


def render_text(info: Any, config: Any, est: Any, where: str) -> str:
    from ..core.models import format_params
    from ..core.vram import COMPONENT_LABELS

    method = config.method
    if method != "full":
        method += f" r{config.lora_rank} on {', '.join(config.lora_target_modules)}"
    if method.startswith("full") and config.precompute_ref_log_probs:
        method += " (precomputed reference log-probs)"
    length = f"{est.seq_len} tokens"
    lines = [
        f"Model   {info.name}: {format_params(info.param_count)} parameters, {info.model_type or '?'}, "
        f"{info.num_layers} layers, hidden {info.hidden_size}, vocabulary {info.vocab_size:,}",
        f"Run     {method}; batch {config.per_device_batch_size} pairs = {2 * config.per_device_batch_size} sequences × "
        f"{length}; {'bf16' if config.precision == 'auto' else config.precision}; gradient checkpointing "
        f"{'on' if config.gradient_checkpointing else 'off'}"
        + (f"; {config.nproc} processes ({config.strategy})" if config.nproc > 1 else ""),
        f"Peak    {_gib(est.total_bytes)} per GPU (during the {est.peak_phase}; expect {_gib(est.band[0])} – {_gib(est.band[1])})",
    ]
    width = max(len(v) for v in COMPONENT_LABELS.values())
    for name, value in est.components.items():
        if value:
            lines.append(f"  {COMPONENT_LABELS.get(name, name):<{width}}  {value / GiB:8.2f} GiB")
    verdict = {
        "fits": "fits",
        "tight": "fits, but with less than 10 % headroom",
        "no": "does NOT fit",
        "unknown": "no GPU to compare with",
    }[est.verdict]
    lines.append(f"GPU     {where}")
    lines.append(f"Verdict {verdict}")
    if est.suggestions:
        lines.append("To make it fit:")
        for s in est.suggestions:
            mark = "fits" if s.fits else ("does not fit" if s.fits is False else "")
            changes = ", ".join(f"{k}={v}" for k, v in s.changes.items())
            lines.append(f"  - {s.label}: {_gib(s.total_bytes)} {mark}  [{changes}]")
    for note in est.notes:
        lines.append(f"Note    {note}")
    if info.error:
        lines.append(f"Note    the model folder has a problem: {info.error}")
    return "\n".join(lines)


def run_probe(info: Any, config: Any, est: Any, inv: Any, quiet: bool = False) -> dict[str, Any] | None:
    """Measure in a child process (torch stays out of this one). None when there is no GPU."""
    if inv.cpu_only:
        return _skipped("no GPU: probe skipped", quiet)
    model = info.path if info.path else (info.repo_id or info.name)
    gpu = config.gpus[0] if config.gpus else (inv.gpus[0].index if inv.gpus else 0)
    payload = {"model": model, "config": config.model_dump(mode="json"), "padded_length": est.seq_len, "gpu": 0}
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    env.setdefault("TQDM_DISABLE", "1")
    cmd = [sys.executable, "-m", "dpo_tui.worker.probe", "--spec", json.dumps(payload)]
    if not quiet:
        sys.stdout.write(f"Probe   two DPO steps on GPU {gpu} ({est.seq_len} tokens per sequence)...\n")
        sys.stdout.flush()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if not quiet else subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)
    result = None
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and '"probe"' in line:
            try:
                result = json.loads(line)["probe"]
            except (ValueError, KeyError):
                continue
        elif line.startswith("no GPU"):
            return _skipped(line, quiet)
    if result is None:
        tail = (proc.stderr or "")[-2000:] if quiet else ""
        raise UserError(f"the probe failed (exit {proc.returncode})" + (f": {tail.strip().splitlines()[-1]}" if tail.strip() else ""),
                        hint="see the output above; the estimate itself is unaffected")
    return result


def _skipped(reason: str, quiet: bool) -> dict[str, Any] | None:
    """The probe did not run: hand the reason back when quiet, else print it."""
    if quiet:
        return {"skipped": reason}
    sys.stdout.write(reason + "\n")
    return None


def render_probe(est: Any, result: dict[str, Any] | None) -> str:
    if not result:
        return ""
    if result.get("skipped"):
        return str(result["skipped"])
    if result.get("oom"):
        return (f"Probe   ran out of memory on {result.get('device', 'the GPU')} "
                f"(estimate {_gib(est.total_bytes)}): this configuration does not fit")
    if result.get("error") and not result.get("measured"):
        return f"Probe   failed: {result['error']}"
    measured = result.get("measured")
    err = (est.total_bytes / measured - 1) * 100 if measured else None
    return (
        f"Probe   measured {_gib(measured)} = reserved {_gib(result.get('peak_reserved'))} + CUDA context "
        f"{_gib(result.get('context'))} on {result.get('device', '?')} ({result.get('path', '?')}, {result.get('seconds', '?')} s)\n"
        f"        estimate {_gib(est.total_bytes)}: error {err:+.1f}%" if err is not None else "Probe   no measurement"
    )
