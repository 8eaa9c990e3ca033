"""Checking an export against the model it came from: logits of base+adapter (PEFT), of a merged folder, of a GGUF.

Tolerances are relative to the largest reference logit (see docs/export.md for the measured values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOLERANCE = {"merged": 1e-5, "f16": 1e-2, "bf16": 4e-2, "q8_0": 1e-1}


def prompt_ids(tokenizer_dir: Path, messages: list[dict[str, str]]) -> Any:
    """Token ids of ``messages`` through the folder's own chat template, ready for generation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


def peft_logits(base: Path, adapter: Path, ids: Any) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32), str(adapter)).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def logits_of(path: Path, ids: Any, gguf_file: str | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def default_rope_logits(path: Path, ids: Any) -> Any:
    """Logits of ``path`` with its rope scaling switched off.

    transformers' GGUF loader reads Llama-3's rope scaling as plain rope (llama.cpp applies the
    ``rope_freqs`` tensor instead), so a GGUF of a Llama-3 model loaded back by transformers matches
    this, and :func:`rope_factors_error` checks the factors the file carries.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(path))
    config.rope_parameters = {"rope_theta": config.rope_parameters["rope_theta"], "rope_type": "default"}
    model = AutoModelForCausalLM.from_pretrained(str(path), config=config, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def rope_factors_error(gguf_path: Path, model_dir: Path) -> float:
    """Largest relative difference between the GGUF's ``rope_freqs`` and plain/scaled inverse frequencies."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    scaled = model.model.rotary_emb.inv_freq.float()
    theta = model.config.rope_parameters["rope_theta"]
    dim = scaled.numel() * 2
    plain = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    (tensor,) = [t for t in gguf.GGUFReader(str(gguf_path)).tensors if t.name == "rope_freqs.weight"]
    stored = torch.tensor(tensor.data.astype("float64")).flatten()
    expected = plain / scaled.double()
    return float(((stored - expected).abs() / expected).max())


def rel_err(a: Any, b: Any) -> float:
    return float((a - b).abs().max() / b.abs().max())


def adapter_run(root: Path, base: Path, seed: int = 1, rank: int = 4) -> Any:
    """A finished run of ``base`` whose final adapter is a random, non-zero PEFT LoRA (no training needed)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dpo_tui.core.config import RunConfig
    from dpo_tui.core.runs import create_run

    root.mkdir(parents=True, exist_ok=True)
    run = create_run(root, RunConfig(model=str(base), dataset="sample", lora_rank=rank, lora_alpha=2 * rank, max_steps=1))
    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                           LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(str(run.adapter_dir))
    (run.adapter_dir / "COMPLETE").write_text("")
    run.update_status(state="finished", step=1, max_steps=1)
    return run


FAKE_CONVERTER = """\
import json, pathlib, sys
args = sys.argv[1:]
source = pathlib.Path(args[0])
out = pathlib.Path(args[args.index("--outfile") + 1])
config = json.loads((source / "config.json").read_text())
out.write_text(json.dumps({"argv": args, "model_type": config["model_type"],
                           "files": sorted(p.name for p in source.iterdir())}))
"""
FAKE_QUANTIZE = '#!/bin/sh\n{ cat "$1"; echo; echo "quantized $3"; } > "$2"\n'


def fake_llama_cpp(folder: Path, quantize: bool = True, quantize_in: str = "build/bin") -> Path:
    """A stand-in llama.cpp folder: the converter records its call as JSON, llama-quantize appends a line."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "convert_hf_to_gguf.py").write_text(FAKE_CONVERTER)
    if quantize:
        tool = folder / quantize_in / "llama-quantize"
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text(FAKE_QUANTIZE)
        tool.chmod(0o755)
    return folder
