"""The Ollama Modelfile, from the tokenizer: its chat template, BOS behaviour and special tokens.

The translation itself is pure (:mod:`dpo_tui.core.ollama_template`); this module only asks the
tokenizer what the template renders, whether it adds BOS itself, and which tokens are special.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ...core.ollama_template import ChatShape, render_modelfile, shape_from_render, stop_strings
from .staging import Progress


def chat_shape(tokenizer: Any) -> ChatShape | None:
    """The tokenizer's chat template as role-marker pieces; None when it has none or it is not that shape."""
    if not getattr(tokenizer, "chat_template", None):
        return None

    def render(msgs: list[dict[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    return shape_from_render(render, getattr(tokenizer, "bos_token", None) or "")


def stop_tokens(tokenizer: Any, shape: ChatShape | None) -> list[str]:
    """End-of-turn strings: the EOS token and the special tokens that close or open a turn."""
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    with contextlib.suppress(Exception):  # tokenizers without added-token records have no more specials
        for token in tokenizer.added_tokens_decoder.values():
            if getattr(token, "special", False):
                specials.add(str(token))
    return stop_strings(shape, eos=getattr(tokenizer, "eos_token", None), bos=getattr(tokenizer, "bos_token", None),
                        specials=specials)


def _adds_bos(tokenizer: Any) -> bool:
    """Whether tokenizing adds BOS (then llama.cpp adds it too, and the template must not repeat it)."""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(probe) and tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id


def modelfile_text(tokenizer: Any, gguf_path: Path, ollama_dir: Path, run_id: str, progress: Progress) -> str:
    """The Modelfile for ``gguf_path``; what it cannot carry over from the template becomes a warning."""
    shape = chat_shape(tokenizer)
    strip_bos = tokenizer.bos_token if shape is not None and _adds_bos(tokenizer) else None
    text, warnings = render_modelfile(run_id, gguf_path, ollama_dir, shape, strip_bos, stop_tokens(tokenizer, shape))
    for message in warnings:
        progress.warn(message)
    return text
