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


def rel_err(a: Any, b: Any) -> float:
    return float((a - b).abs().max() / b.abs().max())
