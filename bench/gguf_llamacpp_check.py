"""Does real llama.cpp read the GGUF dpo-tui writes, and generate what the merged model generates?

Trains the sample model for a few steps (a real run), exports it merged and as GGUF with dpo-tui's own
writer (``--llama-cpp off``), then greedy-decodes the same prompt tokens with transformers on the merged
folder and with llama.cpp (the ``llama-cpp-python`` bindings) on the GGUF, and compares the first tokens.

Needs ``pip install llama-cpp-python`` (it builds llama.cpp from source: minutes, once). Prints a table and
exits 1 when the tokens differ, 3 when llama-cpp-python is not installed. Not part of ``make test``.

    python bench/gguf_llamacpp_check.py [--tokens 16] [--gguf-type f16|bf16|q8_0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["What is the capital of France?", "Name a primary colour.", "How many legs does a spider have?"]


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dpo_tui", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"dpo-tui {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--gguf-type", default="f16", choices=("f16", "bf16", "q8_0"))
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python (builds llama.cpp from source)")
        return 3
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = args.keep or Path(tempfile.mkdtemp(prefix="dpo-gguf-check-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = work / "runs"
    t0 = time.time()
    run_id = cli("train", "--runs-dir", str(runs), "--max-steps", "6", "--name", "gguf-check").split()[0]
    cli("attach", run_id, "--runs-dir", str(runs))
    merged, gguf = work / "merged", work / "model.gguf"
    cli("export", run_id, "--runs-dir", str(runs), "--merged", str(merged), "--gguf", str(gguf),
        "--gguf-type", args.gguf_type, "--llama-cpp", "off", "--force")
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=256, logits_all=False, verbose=False, seed=0)
    rows, same = [], 0
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=args.tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        hf = out[0, len(ids):].tolist()
        llm.reset()
        cpp: list[int] = []
        for token in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if token == llm.token_eos() or len(cpp) == len(hf):
                break
            cpp.append(int(token))
        hf_cut = [t for t in hf if t != tokenizer.eos_token_id][: len(cpp) or len(hf)]
        match = cpp == hf_cut[: len(cpp)] and len(cpp) > 0
        same += match
        rows.append({"prompt": prompt, "transformers": hf_cut, "llama.cpp": cpp, "match": match,
                     "text": tokenizer.decode(cpp)})
    print(f"GGUF {args.gguf_type} from run {run_id} ({time.time() - t0:.0f} s), llama-cpp-python {llama_cpp.__version__}")
    for row in rows:
        print(f"  {'✓' if row['match'] else '✗'} {row['prompt']!r}: {row['text']!r}")
        if not row["match"]:
            print(f"      transformers {row['transformers']}\n      llama.cpp    {row['llama.cpp']}")
    print(json.dumps({"matched": same, "prompts": len(rows), "gguf_type": args.gguf_type}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if same == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
