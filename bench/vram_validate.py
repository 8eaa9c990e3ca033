#!/usr/bin/env python3
"""Check dpo-tui's VRAM estimate against measured peaks on one GPU.

Builds *randomly initialised* models from the configs of real architectures (written below; nothing
is downloaded), runs two DPO training steps per grid row through ``dpo_tui.worker.probe`` (the real
TRL kernel for the LM head when ``trl`` is importable, else a torch fallback), and prints, per row,
the estimate, the measured peak (``torch.cuda.max_memory_reserved`` over both steps + the CUDA
context seen by NVML), and the error; then the median and P90 of |error| and the worst
under-prediction. Rows that run out of memory are reported as OOM and skipped in the statistics.

Needs torch with CUDA, transformers and peft; trl is optional (carry its wheel: it makes the probe
use TRL's own chunked log-prob kernel); bitsandbytes is optional (QLoRA rows are skipped without
it). The estimator itself (``dpo_tui.core.vram``/``models``) is pure Python and needs no pydantic.

Usage:  python bench/vram_validate.py [--out docs/vram-accuracy.md] [--json rows.json] [--quick]
Budget: < 8 minutes on one H100. The grid is sized for that (not yet timed on one: the wall time is printed);
--budget-s stops starting new models once that many seconds have passed, and their rows are reported as skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dpo_tui.core import models as core_models  # noqa: E402
from dpo_tui.core import vram  # noqa: E402

GiB = 1024**3

# Configs of real architectures (from their config.json on the Hub; only the fields that matter).
ARCHS: dict[str, dict] = {
    "Qwen2.5-0.5B": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "Qwen2.5-1.5B": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=1536, intermediate_size=8960,
                         num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "Llama-3.2-1B": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                         tie_word_embeddings=True, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5),
    "Llama-3.2-3B": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=3072, intermediate_size=8192,
                         num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                         tie_word_embeddings=True, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5),
    "Qwen2.5-7B": dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=3584, intermediate_size=18944,
                       num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                       tie_word_embeddings=False, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "Llama-3.1-8B": dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                         tie_word_embeddings=False, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5),
}


@dataclass
class Row:
    model: str
    method: str = "lora"
    rank: int = 16
    batch: int = 2
    seq: int = 1024
    ckpt: bool = True
    targets: tuple[str, ...] = ("all-linear",)
    precompute: bool = False
    optimizer: str = "adamw_torch"
    quick: bool = False

    def label(self) -> str:
        bits = [self.method if self.method != "lora" else f"lora r{self.rank}"]
        if self.method == "qlora":
            bits[0] = f"qlora r{self.rank}"
        if self.targets != ("all-linear",):
            bits.append("+".join(t.removesuffix("_proj") for t in self.targets))
        bits += [f"B{self.batch}", f"S{self.seq}", "ckpt" if self.ckpt else "no-ckpt"]
        if self.precompute:
            bits.append("precompute")
        return " ".join(bits)


# LoRA rows first per model (the base is reused), full fine-tuning last (it trains the base in place).
GRID: list[Row] = [
    Row("Qwen2.5-0.5B", "lora", 16, 2, 512, True, quick=True),
    Row("Qwen2.5-0.5B", "lora", 16, 4, 1024, True),
    Row("Qwen2.5-0.5B", "lora", 64, 4, 1024, False),
    Row("Qwen2.5-0.5B", "full", 0, 2, 1024, True, quick=True),
    Row("Qwen2.5-0.5B", "full", 0, 2, 512, False),
    Row("Qwen2.5-0.5B", "full", 0, 4, 1024, True, precompute=True),
    Row("Qwen2.5-1.5B", "lora", 16, 2, 2048, True),
    Row("Qwen2.5-1.5B", "lora", 8, 4, 512, False),
    Row("Qwen2.5-1.5B", "full", 0, 1, 1024, True),
    Row("Llama-3.2-1B", "lora", 16, 2, 1024, True, quick=True),
    Row("Llama-3.2-1B", "lora", 64, 8, 512, True),
    Row("Llama-3.2-1B", "lora", 16, 2, 1024, False),
    Row("Llama-3.2-1B", "lora", 16, 4, 1024, False, targets=("q_proj", "v_proj")),
    Row("Llama-3.2-1B", "qlora", 16, 2, 1024, True),
    Row("Llama-3.2-1B", "full", 0, 2, 512, True),
    Row("Llama-3.2-3B", "lora", 16, 2, 1024, True),
    Row("Llama-3.2-3B", "lora", 32, 1, 2048, False),
    Row("Llama-3.2-3B", "full", 0, 1, 512, True),
    Row("Qwen2.5-7B", "lora", 16, 1, 1024, True, quick=True),
    Row("Qwen2.5-7B", "lora", 16, 2, 2048, True),
    Row("Qwen2.5-7B", "lora", 64, 4, 512, True),
    Row("Qwen2.5-7B", "lora", 16, 1, 1024, False),
    Row("Llama-3.1-8B", "lora", 16, 2, 1024, True),
    Row("Llama-3.1-8B", "lora", 16, 1, 4096, True),
    Row("Llama-3.1-8B", "lora", 128, 2, 512, False),
    Row("Llama-3.1-8B", "lora", 16, 4, 2048, True),
]


def estimate_row(row: Row) -> vram.Breakdown:
    info = core_models.info_from_config(ARCHS[row.model], name=row.model)
    wl = vram.Workload(
        method=row.method,
        batch=row.batch,
        seq_len=row.seq,
        lora_rank=max(1, row.rank),
        lora_targets=row.targets,
        grad_ckpt=row.ckpt,
        optimizer=row.optimizer,
        precompute_ref=row.precompute,
        logits="fused",
    )
    return vram.compute(vram.Arch.from_model(info), wl)


def build_model(name: str, device: int):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(ARCHS[name])
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    config = AutoConfig.for_model(model_type, **cfg)
    with torch.device(f"cuda:{device}"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.requires_grad_(False)
    return model


def quantized_copy(model, tmp: Path, device: int):
    """Save the random model and reload it in 4-bit NF4 (double quantisation), as QLoRA loads a base."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model.save_pretrained(tmp, safe_serialization=True)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=torch.bfloat16, device_map={"": device}, attn_implementation="sdpa")


def free_cuda() -> None:
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown report to this file")
    parser.add_argument("--json", help="write the rows (estimate components, measured figures) as JSON")
    parser.add_argument("--quick", action="store_true", help="only the rows marked quick (a smoke test)")
    parser.add_argument("--models", help="comma-separated subset of: " + ", ".join(ARCHS))
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting new models after this many seconds")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no GPU: vram validation skipped")
        return 0
    from dpo_tui.worker import probe

    t0 = time.perf_counter()
    device = args.device
    context = probe.warm_up_cuda(device)
    try:
        import bitsandbytes  # noqa: F401

        have_bnb = True
    except Exception:  # noqa: BLE001
        have_bnb = False
    kernel = probe._chunked_logprob_fn() is not None
    rows = [r for r in GRID if (r.quick or not args.quick)]
    if args.models:
        wanted = {m.strip() for m in args.models.split(",")}
        rows = [r for r in rows if r.model in wanted]
    versions = {"torch": torch.__version__}
    for mod in ("transformers", "peft", "trl", "bitsandbytes"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            versions[mod] = "-"
    gpu = torch.cuda.get_device_name(device)
    total_mem = torch.cuda.get_device_properties(device).total_memory
    print(f"# {gpu}, {total_mem / GiB:.1f} GiB; context {context / GiB:.2f} GiB; " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    print(f"# LM head: {'TRL kernel' if kernel else 'torch fallback (trl not importable)'}; QLoRA rows: {'yes' if have_bnb else 'skipped (no bitsandbytes)'}", flush=True)

    results = []
    by_model: dict[str, list[Row]] = {}
    for r in rows:
        by_model.setdefault(r.model, []).append(r)
    for name, model_rows in by_model.items():
        if time.perf_counter() - t0 > args.budget_s:
            print(f"# time budget reached: skipping {name}", flush=True)
            for r in model_rows:
                results.append({"row": r, "status": "skipped (time)"})
            continue
        free_cuda()
        tb = time.perf_counter()
        base = build_model(name, device)
        print(f"# built {name} in {time.perf_counter() - tb:.1f}s", flush=True)
        for row in model_rows:
            est = estimate_row(row)
            spec = probe.ProbeSpec(
                method=row.method, batch=row.batch, seq_len=row.seq, lora_rank=max(1, row.rank),
                lora_alpha=2 * max(1, row.rank), lora_targets=list(row.targets), grad_ckpt=row.ckpt,
                optimizer=row.optimizer, precompute_ref=row.precompute,
            )
            entry: dict = {"row": row, "estimate": est}
            ref = quant = target = None
            try:
                if row.method == "qlora":
                    if not have_bnb:
                        entry["status"] = "skipped (no bitsandbytes)"
                        results.append(entry)
                        continue
                    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"vram-validate-{name}"
                    quant = quantized_copy(base, tmp, device)
                    target = quant
                else:
                    target = base
                if row.method == "full" and not row.precompute:
                    ref = build_model(name, device)
                free_cuda()
                out = probe.manual_steps(target, spec, ref_model=ref, device=device)
                ctx_now = probe.cuda_context_bytes(device)
                entry.update(out)
                entry["context"] = max(context, ctx_now)
                entry["measured"] = out["peak_reserved"] + entry["context"]
                entry["status"] = "ok"
            except torch.OutOfMemoryError:
                entry["status"] = "OOM"
                entry["measured"] = None
            finally:
                del ref, quant, target
                free_cuda()
            results.append(entry)
            _print_row(entry)
        del base
        free_cuda()

    report = render(results, gpu, total_mem, context, versions, kernel, time.perf_counter() - t0)
    print()
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    if args.json:
        Path(args.json).write_text(json.dumps([_jsonable(e) for e in results], indent=1))
    return 0


def _err(entry: dict) -> float | None:
    m = entry.get("measured")
    if not m or entry.get("status") != "ok":
        return None
    return entry["estimate"].total / m - 1


def _print_row(entry: dict) -> None:
    row = entry["row"]
    est = entry["estimate"].total
    m = entry.get("measured")
    err = _err(entry)
    err_s = f"{err * 100:+.1f}%" if err is not None else entry.get("status", "")
    ms = f"{m / GiB:.2f}" if m else "-"
    alloc = entry.get("peak_allocated")
    alloc_s = f"{alloc / GiB:.2f}" if alloc else "-"
    parts = " ".join(f"{k[:4]}={v / GiB:.2f}" for k, v in entry["estimate"].components.items() if v)
    print(f"{row.model:13s} {row.label():34s} est {est / GiB:6.2f}  meas {ms:>6s}  alloc {alloc_s:>6s}  {err_s:>7s}  "
          f"{entry.get('seconds', '')}s  [{parts}]", flush=True)


def _jsonable(entry: dict) -> dict:
    out = {k: v for k, v in entry.items() if k not in ("row", "estimate")}
    out["row"] = vars(entry["row"]) | {"label": entry["row"].label()}
    if "estimate" in entry:
        out["estimate"] = {"total": entry["estimate"].total, "components": entry["estimate"].components, "phase": entry["estimate"].phase}
    return out


def _p90(values: list[float]) -> float:
    """The 90th percentile, linearly interpolated (numpy's default)."""
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else (values[0] if values else math.nan)


def render(results: list[dict], gpu: str, total_mem: int, context: int, versions: dict, kernel: bool, seconds: float) -> str:
    lines = [
        "| model | configuration | estimate GiB | measured GiB | allocated GiB | error | peak phase (estimate) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    errs = []
    for e in results:
        row = e["row"]
        est = e.get("estimate")
        err = _err(e)
        if err is not None:
            errs.append(err)
        m = e.get("measured")
        alloc = e.get("peak_allocated")
        lines.append(
            f"| {row.model} | {row.label()} | {est.total / GiB:.2f} | " if est else f"| {row.model} | {row.label()} | - | "
        )
        lines[-1] += (f"{m / GiB:.2f}" if m else "-") + " | " + (f"{alloc / GiB:.2f}" if alloc else "-") + " | "
        lines[-1] += (f"{err * 100:+.1f}%" if err is not None else e.get("status", "-")) + " | " + (est.phase if est else "") + " |"
    abs_errs = [abs(x) for x in errs]
    summary = [
        "",
        f"Rows measured: {len(errs)} of {len(results)}. "
        f"Median |error| {statistics.median(abs_errs) * 100:.1f}%, P90 {_p90(abs_errs) * 100:.1f}%, "
        f"worst under-prediction {min(errs) * 100:+.1f}%, worst over-prediction {max(errs) * 100:+.1f}%."
        if errs
        else "No rows measured.",
        "",
        f"Device: {gpu} ({total_mem / GiB:.1f} GiB), CUDA context {context / GiB:.2f} GiB. "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f". LM head: {'TRL chunked kernel' if kernel else 'torch fallback'}. Python {platform.python_version()}. "
        f"Wall time {seconds:.0f} s.",
        "Measured = torch.cuda.max_memory_reserved over two DPO steps on the longest padded batch + CUDA context (NVML). "
        "Error = estimate / measured − 1 (positive = the estimate errs high, which is the safe side).",
    ]
    return "\n".join(lines + summary) + "\n"


if __name__ == "__main__":
    sys.exit(main())
