"""What the console knows about one model: :class:`ModelInfo`, the linear-layer shapes, and the family tables.

:mod:`.model_config` fills the facts from ``config.json``, :mod:`.model_folder` from folders and safetensors
headers; :mod:`.models` finds the models. Pure stdlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer.tiktoken")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Architectures whose MLP is a plain up/act/down (no gate); everything else is treated as gated (SwiGLU).
NON_GATED_TYPES = {"gpt2", "gpt_neox", "gptj", "phi", "falcon", "opt", "bloom", "gpt_bigcode", "starcoder2", "mpt", "codegen"}
# Architectures whose blocks use GPT-2's Conv1D (weights stored as [in, out] instead of [out, in]).
CONV1D_TYPES = {"gpt2", "imagegpt", "decision_transformer"}
# Model types whose q/k/v projections carry a bias although config.json does not say so.
QKV_BIAS_TYPES = {"qwen", "qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"}
# Model types whose config omits tie_word_embeddings but whose class default is "untied".
# Model types whose blocks fuse q/k/v into one ``qkv_proj`` and gate/up into one ``gate_up_proj``.
FUSED_PROJECTION_TYPES = {"phi3"}
# Model types with four RMSNorms per block (before and after attention and MLP) instead of two.
FOUR_NORM_TYPES = {"gemma2", "gemma3", "gemma3_text"}
# Model types with a per-head RMSNorm on queries and keys (``q_norm``/``k_norm``, head_dim weights each).
QK_NORM_TYPES = {"gemma3", "gemma3_text", "qwen3", "qwen3_moe"}
UNTIED_BY_DEFAULT = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "phi3", "olmo2", "granite"}


@dataclass(frozen=True)
class LinearGroup:
    """All linear layers inside the blocks that share one module name (e.g. every ``q_proj``).

    ``in_features``/``out_features`` are sums over the ``count`` layers, so LoRA parameters for the
    group are ``rank * (in_features + out_features)`` and the per-layer input width is
    ``in_features / count``.
    """

    count: int
    in_features: int
    out_features: int
    numel: int

    @property
    def d_in(self) -> float:
        return self.in_features / self.count if self.count else 0.0


@dataclass
class ModelInfo:
    """One model (or adapter) and the facts the console needs about it. ``error`` says why it is unusable."""

    name: str
    path: str | None = None
    source: str = "local"
    """``sample`` | ``local`` | ``hf-cache`` | ``hub`` | ``settings-root``."""
    repo_id: str | None = None
    revision: str | None = None
    size_bytes: int | None = None
    architecture: str | None = None
    model_type: str | None = None
    param_count: int | None = None
    dtype: str | None = None
    num_layers: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    vocab_size: int | None = None
    tied_embeddings: bool | None = None
    context_length: int | None = None
    has_chat_template: bool = False
    quantization: dict[str, Any] | None = None
    is_adapter: bool = False
    base_model: str | None = None
    adapters: list[str] = field(default_factory=list)
    error: str | None = None
    # --- extra facts (beyond the UI contract) ---------------------------------------------
    head_dim: int | None = None
    has_tokenizer: bool = False
    param_source: str | None = None
    """``safetensors`` (exact, from headers) or ``config`` (arithmetic) or None."""
    weight_bytes: int | None = None
    """Bytes of tensor data in the weight files (what the checkpoint occupies in memory as stored)."""
    linear_groups: dict[str, LinearGroup] = field(default_factory=dict)
    mlp_gated: bool = True
    num_experts: int | None = None
    experts_per_token: int | None = None
    adapter_rank: int | None = None
    adapter_targets: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def has_arch(self) -> bool:
        """Enough facts for a VRAM estimate."""
        return bool(self.num_layers and self.hidden_size and self.vocab_size and self.param_count)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def summary(self) -> str:
        """One line for lists: size, architecture, or the reason it is broken."""
        if self.error:
            return f"{self.name}: {self.error}"
        bits = [self.name]
        if self.param_count:
            bits.append(format_params(self.param_count))
        if self.architecture:
            bits.append(self.architecture)
        if self.is_adapter and self.base_model:
            bits.append(f"adapter for {self.base_model}")
        return " · ".join(bits)


def format_params(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}" if n < 100 * div else f"{n / div:.0f}{unit}"
    return str(n)
