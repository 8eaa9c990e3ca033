"""Side-by-side chat cost: one batched base+tuned reply against two sequential single replies.

Prints, from one run of one chat worker on the tiny model (GPU when there is one):

  (a) time of one side-by-side reply (base + tuned in one request)
      ÷ time of two sequential single replies (base alone, then tuned alone)     budget ≤ 0.67
  (b) the worker's peak memory while answering with two sides
      ÷ its peak memory while answering with one (tuned) side                     budget ≤ 1.1

Every reply is greedy with the end-of-sequence token ignored, so every side generates exactly
``--max-new-tokens`` tokens and the comparison is of equal work. Timings are wall-clock from
sending the request to its ``done`` event, medians over interleaved repetitions after warm-up.
Memory is the worker's ``cuda_peak`` (bytes allocated at peak during the request: base weights,
adapter, KV cache and activations); on CPU, where the process RSS hides a tiny model, it is the
weights (base + adapter) plus the peak KV cache, activations not counted.

Usage: python bench/chat_pair.py [--model DIR] [--adapter DIR] [--reps 7] [--max-new-tokens 128]
       [--device auto] [--json]
Without --adapter a LoRA adapter (r=16, all linear layers, random non-zero B) is made for the model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.chat_client import ChatClient
from dpo_tui.core.paths import sample_model_dir

TIME_BUDGET = 0.67
MEMORY_BUDGET = 1.1
PROMPT = "What is the capital of Kenya?"


def make_adapter(model_dir: Path, out: Path, rank: int = 16) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=sample_model_dir())
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        print(f"no model at {args.model} (build sample_data with `make sample`, or pass --model)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="chat-pair-") as tmp:
        adapter = args.adapter or make_adapter(args.model, Path(tmp) / "adapter")
        settings = P.GenerationSettings(max_new_tokens=args.max_new_tokens, greedy=True, ignore_eos=True)
        msgs = [{"role": "user", "content": PROMPT}]
        with ChatClient(log_path=Path(tmp) / "worker.log") as client:
            loaded = client.load_model(str(args.model), device=args.device, dtype=args.dtype)
            client.load_adapter("tuned", adapter)

            def timed(sides: list[dict]) -> tuple[float, dict]:
                t0 = time.perf_counter()
                result = client.reply(sides, settings)
                return time.perf_counter() - t0, result

            both = [P.side(P.BASE, msgs), P.side("tuned", msgs)]
            for _ in range(args.warmup):
                timed(both)
                timed([P.side(P.BASE, msgs)])
                timed([P.side("tuned", msgs)])
            pair_t, seq_t, mem_two, mem_one = [], [], [], []
            mode = ""
            for _ in range(args.reps):
                t, r = timed(both)
                pair_t.append(t)
                mode = r["started"]["mode"]
                mem_two.append(_mem(r["done"]["memory"]))
                t_base, _ = timed([P.side(P.BASE, msgs)])
                t_tuned, r1 = timed([P.side("tuned", msgs)])
                seq_t.append(t_base + t_tuned)
                mem_one.append(_mem(r1["done"]["memory"]))
                assert all(s["tokens"] == args.max_new_tokens for s in r["sides"]), "unequal reply lengths"

    pair, seq = statistics.median(pair_t), statistics.median(seq_t)
    ratio_t = pair / seq
    (kind_two, two), (_, one) = max(mem_two), max(mem_one)
    ratio_m = two / one if one else float("nan")
    print(f"chat_pair on {loaded['device']} ({loaded['dtype']}), model {args.model.name} "
          f"({loaded['parameters'] / 1e6:.2f} M parameters), {args.max_new_tokens} new tokens per side, "
          f"{args.reps} reps, batched mode: {mode}")
    print(f"  side-by-side reply      {pair * 1000:8.1f} ms   (base+tuned in one request)")
    print(f"  two sequential replies  {seq * 1000:8.1f} ms   (base, then tuned)")
    print(f"  (a) time ratio          {ratio_t:8.3f}      budget ≤ {TIME_BUDGET}  {'PASS' if ratio_t <= TIME_BUDGET else 'FAIL'}")
    print(f"  memory, two sides       {two / 2**20:8.2f} MiB  ({kind_two})")
    print(f"  memory, one side        {one / 2**20:8.2f} MiB")
    print(f"  (b) memory ratio        {ratio_m:8.3f}      budget ≤ {MEMORY_BUDGET}  {'PASS' if ratio_m <= MEMORY_BUDGET else 'FAIL'}")
    if args.json:
        print(json.dumps({
            "device": loaded["device"], "dtype": loaded["dtype"], "parameters": loaded["parameters"],
            "max_new_tokens": args.max_new_tokens, "reps": args.reps, "mode": mode,
            "pair_s": pair_t, "sequential_s": seq_t, "time_ratio": ratio_t,
            "memory_kind": kind_two, "memory_two": two, "memory_one": one, "memory_ratio": ratio_m,
        }))
    return 0 if ratio_t <= TIME_BUDGET and ratio_m <= MEMORY_BUDGET else 1


def _mem(memory: dict) -> tuple[str, int]:
    if "cuda_peak" in memory:
        return "cuda_peak: peak bytes allocated during the request", int(memory["cuda_peak"])
    # CPU: the process RSS barely moves for a tiny model, so count the tensors that scale with sides
    return "weights + peak KV cache (CPU; activations not counted)", int(memory["weights"]) + int(memory["kv_cache_peak"])


if __name__ == "__main__":
    sys.exit(main())
