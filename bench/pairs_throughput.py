"""Pair generation throughput: candidates per second, the batched engine against a plain ``generate`` loop.

Prints, from one process on the tiny model (GPU when there is one), for n = 2 and n = 4 candidates per prompt:

  batched   the pairs worker's way: :class:`dpo_tui.worker.batch_gen.BatchGenerator`, ``batch_size // n``
            prompts per batch with all n candidates of a prompt in it, one seed per candidate
  baseline  a plain loop: ``model.generate(...)`` from transformers, one candidate at a time
  ratio     batched candidates/s ÷ baseline candidates/s                          target ≥ 1.5 at n = 4

Both sample with the same temperature, top_p, max_new_tokens, chat template and prompts, and both ignore
end-of-sequence (the engine's ``ignore_eos``, ``min_new_tokens`` for ``generate``), so every candidate is
exactly ``--max-new-tokens`` tokens and the comparison is of equal work. Timings are wall-clock after a
warm-up, the best of ``--reps`` repetitions, both measured in the same run on the same device.

Usage: python bench/pairs_throughput.py [--model DIR] [--prompts FILE] [--count 16] [--max-new-tokens 64]
       [--batch-size 16] [--reps 3] [--device auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.paths import sample_heldout_prompts_path, sample_model_dir
from dpo_tui.core.prompts_file import read_prompts

TARGET = 1.5
TEMPERATURE, TOP_P = 0.8, 0.95


def batched_rate(gen, prompts: list[list[dict[str, str]]], n: int, settings: P.GenerationSettings,
                 batch_size: int) -> float:
    from dpo_tui.worker.batch_gen import GenItem

    per_chunk = max(1, batch_size // n)
    t0 = time.perf_counter()
    made = 0
    for start in range(0, len(prompts), per_chunk):
        items = [GenItem(m, seed=i * n + k) for i, m in enumerate(prompts[start : start + per_chunk], start) for k in range(n)]
        results = gen.generate(items, settings, batch_size=len(items))
        assert all(r.tokens == settings.max_new_tokens for r in results), "unequal candidate lengths"
        made += len(results)
    return made / (time.perf_counter() - t0)


def baseline_rate(model, tokenizer, device, prompts: list[list[dict[str, str]]], n: int, max_new: int) -> float:
    import torch

    encoded = [tokenizer.apply_chat_template(m, add_generation_prompt=True, return_tensors="pt") for m in prompts]
    encoded = [(e["input_ids"] if hasattr(e, "keys") else e).to(device) for e in encoded]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    t0 = time.perf_counter()
    made = 0
    with torch.inference_mode():
        for i, ids in enumerate(encoded):
            for k in range(n):
                torch.manual_seed(i * n + k)
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=TEMPERATURE,
                                     top_p=TOP_P, max_new_tokens=max_new, min_new_tokens=max_new, pad_token_id=pad)
                assert out.shape[1] - ids.shape[1] == max_new
                made += 1
    return made / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=sample_model_dir())
    parser.add_argument("--prompts", type=Path, default=sample_heldout_prompts_path())
    parser.add_argument("--count", type=int, default=16, help="prompts used (the first COUNT of the file)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every number")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        print(f"no model at {args.model} (build sample_data with `make sample`, or pass --model)", file=sys.stderr)
        return 2
    from dpo_tui.worker.batch_gen import BatchGenerator

    prompts = [p.as_messages() for p in read_prompts(args.prompts)[: args.count]]
    gen = BatchGenerator(str(args.model), device=args.device)
    model, tokenizer, device = gen.engine.model, gen.tokenizer, gen.engine.device
    settings = P.GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=TEMPERATURE, top_p=TOP_P,
                                    ignore_eos=True)
    # Warm-up: the first passes allocate caches and pick kernels.
    batched_rate(gen, prompts[:2], 2, settings, args.batch_size)
    baseline_rate(model, tokenizer, device, prompts[:1], 1, args.max_new_tokens)
    results = {}
    print(f"pairs_throughput on {device} ({gen.info.get('dtype')}), model {args.model.name}, {len(prompts)} prompts, "
          f"{args.max_new_tokens} new tokens per candidate, batch size {args.batch_size}, best of {args.reps}")
    ok = True
    for n in (2, 4):
        batched = max(batched_rate(gen, prompts, n, settings, args.batch_size) for _ in range(args.reps))
        base = max(baseline_rate(model, tokenizer, device, prompts, n, args.max_new_tokens) for _ in range(args.reps))
        ratio = batched / base
        verdict = ""
        if n == 4:
            ok = ratio >= TARGET
            verdict = f"  target ≥ {TARGET}  {'PASS' if ok else 'MISSED'}"
        print(f"  n={n}  batched {batched:8.1f} cand/s   generate loop {base:8.1f} cand/s   ratio {ratio:6.2f}{verdict}")
        results[n] = {"batched": batched, "baseline": base, "ratio": ratio}
    if not ok:
        r = results[4]
        print(f"MISSED: at n=4 the batched engine made {r['batched']:.1f} candidates/s against {r['baseline']:.1f} "
              f"for the generate loop (ratio {r['ratio']:.2f} < {TARGET})")
    if args.json:
        print(json.dumps({"device": str(device), "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
                          "batch_size": args.batch_size, "results": results}))
    gen.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
