"""Acceptance check for the bundled sample: does DPO on the sample pairs shorten the sample model?

The console's built-in sample experiment promises a visible effect in about a minute on a CPU.
This script runs exactly that experiment outside the console (TRL ``DPOTrainer`` + a LoRA
adapter on ``sample_data/tiny-chat`` with ``sample_data/prefs``) and measures the mean number of
words of greedy answers to the held-out prompts before and after training. It exits non-zero
unless the tuned mean drops by at least ``--min-drop`` (30 % by default).

The settings below are the defaults of the sample experiment; change them here and there together.

Usage: python scripts/check_sample_dpo.py [--seed 42] [--data train.jsonl] [--max-steps 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "sample_data" / "tiny-chat"
PREFS_DIR = ROOT / "sample_data" / "prefs"

# Defaults of the built-in sample experiment.
SAMPLE_DPO = {
    "beta": 0.1,
    "learning_rate": 5e-4,
    "max_steps": 40,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 256,
}
SAMPLE_LORA = {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def greedy_words(
    model, tokenizer, prompts: list[str], chat: bool = True, max_new_tokens: int = 60
) -> tuple[float, list[str]]:
    """Mean words of greedy answers (chat template, or the raw prompt when ``chat`` is false)."""
    answers = []
    model.eval()
    with torch.no_grad():
        for p in prompts:
            if chat:
                enc = tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=True
                )
            else:
                enc = tokenizer(p, return_tensors="pt")
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
            answers.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return sum(len(a.split()) for a in answers) / len(answers), answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", default="train.jsonl", help="file in sample_data/prefs/")
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    parser.add_argument("--max-steps", type=int, default=SAMPLE_DPO["max_steps"])
    parser.add_argument("--lr", type=float, default=SAMPLE_DPO["learning_rate"])
    parser.add_argument("--beta", type=float, default=SAMPLE_DPO["beta"])
    parser.add_argument("--batch-size", type=int, default=SAMPLE_DPO["per_device_train_batch_size"])
    parser.add_argument("--eval-plain", action="store_true", help="also measure with raw (non-chat) prompts")
    parser.add_argument("--min-drop", type=float, default=0.30)
    parser.add_argument("--show", type=int, default=6, help="print this many before/after answers")
    args = parser.parse_args()

    torch.set_num_threads(2)
    heldout = (PREFS_DIR / "heldout_prompts.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)

    base_mean, base_answers = greedy_words(model, tokenizer, heldout)
    base_plain = greedy_words(model, tokenizer, heldout, chat=False)[0] if args.eval_plain else None

    config = DPOConfig(
        output_dir="/tmp/dpo-tui-sample-check",
        beta=args.beta,
        learning_rate=args.lr,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=SAMPLE_DPO["gradient_accumulation_steps"],
        max_length=SAMPLE_DPO["max_length"],
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        logging_nan_inf_filter=False,
        seed=args.seed,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(load_jsonl(PREFS_DIR / args.data)),
        processing_class=tokenizer,
        peft_config=LoraConfig(**SAMPLE_LORA),
    )
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "loss" in h]

    tuned_mean, tuned_answers = greedy_words(trainer.model, tokenizer, heldout)
    if base_plain is not None:
        tuned_plain = greedy_words(trainer.model, tokenizer, heldout, chat=False)[0]
        print(f"raw-prompt mean words base {base_plain:.1f} -> tuned {tuned_plain:.1f}")
    for p, a, b in list(zip(heldout, base_answers, tuned_answers, strict=True))[: args.show]:
        print(f"Q: {p}\n  base:  {a}\n  tuned: {b}")
    drop = 1 - tuned_mean / base_mean
    print(
        f"data={args.data} seed={args.seed} steps={args.max_steps} lr={args.lr} beta={args.beta} "
        f"batch={args.batch_size}\n"
        f"loss {logs[0]['loss']:.3f} -> {logs[-1]['loss']:.3f}; "
        f"reward acc (last) {logs[-1].get('rewards/accuracies', float('nan')):.2f}; train {train_s:.1f}s\n"
        f"mean words base {base_mean:.1f} -> tuned {tuned_mean:.1f} (drop {drop:.0%})"
    )
    ok = drop >= args.min_drop
    print("PASS" if ok else f"FAIL: drop below {args.min_drop:.0%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
