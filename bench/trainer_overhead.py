"""Trainer overhead: dpo-tui's trainer against a plain TRL script, same config, in one run.

Both train the sample experiment (tiny-chat, sample pairs, LoRA) for the same steps on this
machine, one after the other, in fresh processes. Throughput is TRL's own
``train_steps_per_second`` (the ``train()`` loop only, so model loading does not count); peak
memory is each child's ``ru_maxrss``. Budgets (docs/design/budgets.md): steps/s ratio ≥ 0.97, peak-RSS
ratio ≤ 1.03.

    python bench/trainer_overhead.py [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpo_tui.core import events as ev  # noqa: E402
from dpo_tui.core.config import SAMPLE_PRESET, build_config  # noqa: E402
from dpo_tui.core.runs import create_run  # noqa: E402

PLAIN_SCRIPT = r'''
import json, resource, sys
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

cfg = json.loads(sys.argv[1])
rows = [json.loads(l) for l in open(cfg["dataset"]) if l.strip()]
tok = AutoTokenizer.from_pretrained(cfg["model"])
model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=torch.float32)
torch.manual_seed(cfg["seed"])
args = DPOConfig(output_dir=cfg["out"], beta=cfg["beta"], learning_rate=cfg["learning_rate"], max_steps=cfg["max_steps"],
                 per_device_train_batch_size=cfg["per_device_batch_size"], max_length=cfg["max_length"], logging_steps=1,
                 report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=cfg["gradient_checkpointing"],
                 logging_nan_inf_filter=False, seed=cfg["seed"], data_seed=cfg["seed"], save_strategy="no", disable_tqdm=True,
                 optim="adamw_torch")
peft = LoraConfig(r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"], target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=peft)
out = trainer.train()
print("RESULT", json.dumps({"steps_per_s": out.metrics["train_steps_per_second"], "runtime": out.metrics["train_runtime"]}))
'''


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[str, int]:
    """Run a child to completion; return its stdout and peak RSS in bytes (from wait4)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0,):
        raise SystemExit(f"child failed: {' '.join(cmd[:4])} …")
    return out, usage.ru_maxrss * 1024


def bench_dpo_tui(steps: int, env: dict[str, str], tmp: Path) -> tuple[float, int]:
    config = build_config({**SAMPLE_PRESET, "max_steps": steps, "save_fraction": 1.0, "save_minutes": 0})
    run = create_run(tmp / "runs", config)
    _, rss = run_child([sys.executable, "-m", "dpo_tui.worker.train", str(run.path)], env)
    summary = next(e for e in ev.read_events(run.events_path) if e["type"] == "log" and e.get("summary"))
    return float(summary["metrics"]["train_steps_per_second"]), rss


def bench_plain(steps: int, env: dict[str, str], tmp: Path) -> tuple[float, int]:
    config = build_config({**SAMPLE_PRESET, "max_steps": steps})
    cfg = config.model_dump()
    cfg.update(model=config.resolved_model(), dataset=config.resolved_dataset(), out=str(tmp / "plain"))
    out, rss = run_child([sys.executable, "-c", PLAIN_SCRIPT, json.dumps(cfg)], env)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT")).split(" ", 1)[1])
    return float(result["steps_per_s"]), rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DPO_TUI_HEARTBEAT_S": "5"}
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            # Alternate the order so warm caches favour neither side.
            pair = [("plain", bench_plain), ("dpo-tui", bench_dpo_tui)]
            for name, fn in pair if i % 2 == 0 else reversed(pair):
                sps, rss = fn(args.steps, env, Path(tmp) / f"{name}-{i}")
                (ours if name == "dpo-tui" else plain).append((sps, rss))
                print(f"  {name:<8} repeat {i + 1}: {sps:.3f} steps/s, peak RSS {rss / 2**20:.0f} MiB", flush=True)
    best = lambda xs, k: max(x[k] for x in xs) if k == 0 else min(x[k] for x in xs)  # noqa: E731
    speed_ratio = best(ours, 0) / best(plain, 0)
    rss_ratio = best(ours, 1) / best(plain, 1)
    print(f"throughput ratio (dpo-tui / plain TRL): {speed_ratio:.3f}  (budget ≥ 0.97)")
    print(f"peak RSS ratio   (dpo-tui / plain TRL): {rss_ratio:.3f}  (budget ≤ 1.03)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
