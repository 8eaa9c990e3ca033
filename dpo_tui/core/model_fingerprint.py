"""What makes two model configs the same base: the sizes an adapter's tensors depend on.

An adapter trained on one base fits another only when these agree; the chat worker checks it
before loading an adapter (``dpo_tui/worker/chat_lora.py``) and a run started from a previous
adapter checks it before launch (``dpo_tui/core/init_adapter.py``). Pure stdlib.
"""

from __future__ import annotations

from typing import Any

FINGERPRINT_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
)


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """The sizes of a ``config.json`` (its ``text_config`` for multimodal models) and its architectures."""
    text_config = config.get("text_config")
    cfg: dict[str, Any] = text_config if isinstance(text_config, dict) else config
    out = {k: cfg.get(k) for k in FINGERPRINT_KEYS if cfg.get(k) is not None}
    if config.get("architectures"):
        out["architectures"] = config["architectures"]
    return out


def fingerprint_diffs(theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """``key theirs ≠ mine`` for every size both fingerprints know and disagree on."""
    return [f"{k} {theirs[k]} ≠ {mine[k]}" for k in FINGERPRINT_KEYS if k in theirs and k in mine and theirs[k] != mine[k]]
