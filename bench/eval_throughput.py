"""Evaluation throughput: base + 3 LoRA adapters answering N prompts in one mixed batched pass vs four passes.

Prints, for the tiny sample model (GPU when there is one):

  (a) wall time of ONE mixed pass: the N prompts × 4 models (base + 3 adapters) as one list of rows,
      batched ``4N`` rows at a time, each row through its own adapter (the engine's per-row LoRA mixing)
      ÷ wall time of FOUR sequential passes: the same rows model by model (base, then adapter 1, 2, 3),
      each pass batched over its N prompts                                      target ≤ 0.5
  (b) peak memory of the mixed run ÷ peak memory of the sequential run           target 1 ± 0.1

"Sequential" is therefore already batched across prompts; it is what an evaluation without mixed
batching would do (one pass per model), not one row at a time, so the ratio measures only what mixing
the adapters in one batch buys. Every answer is greedy with end-of-sequence ignored, so every row
generates exactly ``--max-new-tokens`` tokens (equal work). Each mode runs in its own child process
(loads the base and the 3 adapters, one warm-up pass, then ``--reps`` timed passes; the median is
reported), so each peak memory is that mode's alone: the peak RSS of the process on CPU, torch's peak
allocated CUDA memory on a GPU (the CPU RSS is then reported too). The adapters are made here with peft
(r=16, all linear layers, non-zero B), so each gives different answers.

Usage: python bench/eval_throughput.py [--prompts 24] [--max-new-tokens 64] [--reps 3] [--device auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dpo_tui.core.paths import sample_heldout_prompts_path, sample_model_dir

TIME_TARGET = 0.5
MEMORY_TOLERANCE = 0.10
ADAPTERS = ("a1", "a2", "a3")


def make_adapters(model_dir: Path, out: Path, rank: int = 16) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i, name in enumerate(ADAPTERS):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                                      init_lora_weights=False))
        peft_model.save_pretrained(out / name)
        paths.append(out / name)
    return paths


def prompts(n: int) -> list[str]:
    lines = [line.strip() for line in sample_heldout_prompts_path().read_text().splitlines() if line.strip()]
    return [lines[i % len(lines)] for i in range(n)]


def child(args: argparse.Namespace) -> int:
    """One mode in this process: load, warm up, time ``--reps`` passes, print one JSON line."""
    import torch

    from dpo_tui.core import chat_protocol as P
    from dpo_tui.worker.batch_gen import BatchGenerator, GenItem

    gen = BatchGenerator(str(args.model), device=args.device)
    for name, path in zip(ADAPTERS, args.adapters, strict=True):
        gen.load_adapter(name, str(path))
    settings = P.GenerationSettings(max_new_tokens=args.max_new_tokens, greedy=True, ignore_eos=True)
    models = [P.BASE, *ADAPTERS]
    texts = prompts(args.prompts)
    cuda = torch.cuda.is_available() and args.device != "cpu"

    def one_pass() -> int:
        rows = 0
        if args.child == "mixed":
            items = [GenItem([{"role": "user", "content": t}], adapter=m) for t in texts for m in models]
            rows += len(gen.generate(items, settings, batch_size=len(items)))
        else:
            for m in models:
                items = [GenItem([{"role": "user", "content": t}], adapter=m) for t in texts]
                rows += len(gen.generate(items, settings, batch_size=len(items)))
        return rows

    one_pass()  # warm-up: kernels, allocator, caches
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        rows = one_pass()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    assert rows == len(texts) * len(models), rows
    out = {"mode": args.child, "seconds": statistics.median(times), "times": times, "rows": rows,
           "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
           "device": gen.info.get("device") if isinstance(gen.info, dict) else args.device}
    print(json.dumps(out))
    return 0


def run_mode(mode: str, args: argparse.Namespace, adapters: list[Path]) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--model", str(args.model), "--prompts", str(args.prompts),
           "--max-new-tokens", str(args.max_new_tokens), "--reps", str(args.reps), "--device", args.device,
           "--adapters", *map(str, adapters)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} pass failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=sample_model_dir())
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=("mixed", "sequential"), help=argparse.SUPPRESS)
    parser.add_argument("--adapters", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        adapters = make_adapters(args.model, Path(tmp))
        sequential = run_mode("sequential", args, adapters)  # the baseline, measured in this same run
        mixed = run_mode("mixed", args, adapters)
    mem_key = "cuda_peak_bytes" if mixed.get("cuda_peak_bytes") else "rss_peak_bytes"
    time_ratio = mixed["seconds"] / sequential["seconds"]
    mem_ratio = mixed[mem_key] / sequential[mem_key]
    result = {"prompts": args.prompts, "models": 1 + len(ADAPTERS), "max_new_tokens": args.max_new_tokens,
              "device": mixed["device"], "sequential": sequential, "mixed": mixed, "time_ratio": time_ratio,
              "memory": mem_key, "memory_ratio": mem_ratio,
              "time_ok": time_ratio <= TIME_TARGET, "memory_ok": abs(mem_ratio - 1) <= MEMORY_TOLERANCE}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    mib = 1 << 20
    print(f"eval throughput on {result['device']}: {args.prompts} prompts × {result['models']} models, "
          f"{args.max_new_tokens} tokens each, median of {args.reps}")
    for name, r in (("four sequential passes", sequential), ("one mixed pass", mixed)):
        cuda = f", CUDA peak {r['cuda_peak_bytes'] / mib:.0f} MiB" if r.get("cuda_peak_bytes") else ""
        print(f"  {name:24s} {r['seconds']:7.2f} s   RSS peak {r['rss_peak_bytes'] / mib:.0f} MiB{cuda}")
    print(f"  time   mixed / sequential = {time_ratio:.2f}  (target ≤ {TIME_TARGET}) {'ok' if result['time_ok'] else 'MISSED'}")
    print(f"  memory mixed / sequential = {mem_ratio:.2f}  ({mem_key}, target 1 ± {MEMORY_TOLERANCE}) "
          f"{'ok' if result['memory_ok'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
