#!/usr/bin/env python3
"""GPU smoke runs of the multi-process launcher (docs/scaling.md): one-GPU DDP and ZeRO-2 on a ~1B model.

Builds Llama 3.2 1B's architecture with random weights (nothing downloaded; the bundled sample's
tokenizer, so the vocabulary is the sample's and the model has ~0.97 B parameters), then trains it
with ``dpo-tui train`` (the real supervisor and TRL's ``DPOTrainer``; the ZeRO-2 row goes through
``accelerate launch`` with DeepSpeed, the DDP row with one process runs the trainer directly) on the sample pairs, full fine-tuning in bf16 so the strategies differ where they matter (gradients and
optimizer states). For each run it reports steps/s (from the run's own ``log`` events, first step
excluded) and the peak memory per GPU (``resource`` events: ``torch.cuda.max_memory_reserved`` of
rank 0 and the device's used memory seen by CUDA) against dpo-tui's estimate for the same config.

    python bench/scaling_smoke.py [--steps 20] [--out docs/scaling-measured.md] [--json rows.json]

Needs torch with CUDA. The ZeRO-2 row needs DeepSpeed (``pip install 'dpo-tui[deepspeed]'``) and is
reported as skipped, with the reason, without it. Sized for a few minutes on one H100.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GiB = 1024**3

LLAMA_1B = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=2048, intermediate_size=8192,
                num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True,
                max_position_embeddings=4096, rope_theta=500000.0, rms_norm_eps=1e-5, torch_dtype="bfloat16")

RUNS = (
    ("ddp, 1 GPU", ["--nproc", "1", "--strategy", "ddp"]),
    ("ZeRO-2, 1 GPU", ["--nproc", "1", "--strategy", "zero2"]),
)


def build_model(folder: Path) -> int:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dpo_tui.core.config import SAMPLE_MODEL, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(SAMPLE_MODEL))
    config = LlamaConfig(**{k: v for k, v in LLAMA_1B.items() if k not in ("model_type", "architectures")}, vocab_size=len(tokenizer),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def train(model: Path, root: Path, flags: list[str], steps: int) -> tuple[Path | None, str]:
    cmd = [sys.executable, "-m", "dpo_tui", "train", "--runs-dir", str(root), "--model", str(model), "--dataset", "sample",
           "--method", "full", "--precision", "bf16", "--max-steps", str(steps), "--per-device-batch-size", "4",
           "--max-length", "256", "--save-fraction", "1.0", "--follow", *flags]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    before = set(root.iterdir()) if root.exists() else set()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    made = sorted(set(root.iterdir()) - before) if root.exists() else []
    last = ((proc.stderr or proc.stdout).strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    if proc.returncode != 0 and not made:
        return None, last
    return (made[-1] if made else None), last if proc.returncode else ""


def measure(run: Path) -> dict:
    from dpo_tui.core.config import RunConfig
    from dpo_tui.core.events import read_events
    from dpo_tui.core.models import inspect_model
    from dpo_tui.core.vram import estimate

    events = read_events(run / "events.jsonl")
    logs = [(e["t"], e["step"]) for e in events if e["type"] == "log" and not e.get("summary")]
    rate = (logs[-1][1] - logs[0][1]) / (logs[-1][0] - logs[0][0]) if len(logs) > 1 and logs[-1][0] > logs[0][0] else None
    peaks: dict[int, dict] = {}
    for e in events:
        for d in e.get("devices", []) if e["type"] == "resource" else []:
            cur = peaks.setdefault(d["index"], {"peak": 0, "used": 0})
            cur["peak"], cur["used"] = max(cur["peak"], d.get("peak") or 0), max(cur["used"], d.get("used") or 0)
    config = RunConfig.model_validate(json.loads((run / "config.json").read_text()), context={"frozen": True})
    est = estimate(inspect_model(config.resolved_model()), config)
    terminal = next((e for e in reversed(events) if e["type"] in ("finished", "stopped", "failed")), {})
    return {"state": terminal.get("type"), "kind": terminal.get("kind"), "steps_per_s": rate,
            "per_gpu": {i: {"peak_gib": p["peak"] / GiB, "used_gib": p["used"] / GiB} for i, p in sorted(peaks.items())},
            "estimate_gib": est.total_bytes / GiB}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("scaling_smoke: no CUDA device; nothing measured (CPU scaling is covered by tests/worker/test_multiproc.py)")
        return 2
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="dpo-tui-scaling-") as tmp:
        model = Path(tmp) / "llama-1b-random"
        params = build_model(model)
        print(f"model: Llama 3.2 1B architecture, random weights, {params / 1e9:.2f} B parameters")
        for label, flags in RUNS:
            if "zero2" in flags and importlib.util.find_spec("deepspeed") is None:
                rows.append({"run": label, "skipped": "DeepSpeed is not installed (pip install 'dpo-tui[deepspeed]')"})
                continue
            run, error = train(model, Path(tmp) / "runs", flags, args.steps)
            row = {"run": label, **(measure(run) if run else {}), **({"error": error} if error else {})}
            rows.append(row)
            print(json.dumps(row))
    gpu = torch.cuda.get_device_name(0)
    lines = [f"Measured on {gpu}, {args.steps} steps, batch 4 × 256 tokens, full fine-tuning in bf16, "
             f"{params / 1e9:.2f} B parameters ({time.time() - started:.0f} s in all).", "",
             "| run | outcome | steps/s | peak reserved per GPU | device used per GPU | estimate |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['run']} | skipped: {r['skipped']} | | | | |")
            continue
        per = r.get("per_gpu", {})
        peak = ", ".join(f"GPU{i} {v['peak_gib']:.1f} GiB" for i, v in per.items()) or "?"
        used = ", ".join(f"GPU{i} {v['used_gib']:.1f} GiB" for i, v in per.items()) or "?"
        rate = f"{r['steps_per_s']:.2f}" if r.get("steps_per_s") else "?"
        outcome = r.get("state") or r.get("error", "?")
        lines.append(f"| {r['run']} | {outcome} | {rate} | {peak} | {used} | {r.get('estimate_gib', 0):.1f} GiB |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
