"""``config.json`` → model facts: architecture sizes, the block's linear layers, the parameter count by arithmetic.

Used when there are no weights to read (a bare config, a hub config, a cache holding only some files) and for
what the safetensors headers cannot say. Pure stdlib.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsutil import JSON_ERRORS
from .model_info import (
    FOUR_NORM_TYPES,
    FUSED_PROJECTION_TYPES,
    NON_GATED_TYPES,
    QK_NORM_TYPES,
    QKV_BIAS_TYPES,
    UNTIED_BY_DEFAULT,
    LinearGroup,
    ModelInfo,
)


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    return None


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs nest the language model's facts (``text_config``, ``llm_config``)."""
    for key in ("text_config", "llm_config", "language_config"):
        sub = cfg.get(key)
        if isinstance(sub, dict) and _first(sub, "hidden_size", "n_embd", "d_model"):
            return sub
    return cfg


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def apply_config(info: ModelInfo, cfg: dict[str, Any]) -> None:
    """Fill architecture facts from a parsed ``config.json`` (no parameter count; see :func:`config_param_count`)."""
    text = _text_config(cfg)
    archs = cfg.get("architectures") or text.get("architectures")
    info.architecture = archs[0] if isinstance(archs, list) and archs else info.architecture
    info.model_type = str(_first(text, "model_type") or _first(cfg, "model_type") or "") or None
    info.num_layers = as_int(_first(text, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    info.hidden_size = as_int(_first(text, "hidden_size", "n_embd", "d_model", "dim"))
    info.num_heads = as_int(_first(text, "num_attention_heads", "n_head", "num_heads", "n_heads"))
    kv = as_int(_first(text, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"))
    if kv is None and text.get("multi_query") is True:
        kv = 1
    info.num_kv_heads = kv if kv is not None else info.num_heads
    inter = as_int(_first(text, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "inner_hidden_size"))
    if inter is None and info.hidden_size:
        inter = 4 * info.hidden_size
    if info.model_type == "qwen" and inter:  # Qwen v1 stores 2 × the per-projection width
        inter //= 2
    info.intermediate_size = inter
    info.vocab_size = as_int(_first(text, "vocab_size", "padded_vocab_size")) or as_int(cfg.get("vocab_size"))
    tied = _first(text, "tie_word_embeddings")
    if tied is None:
        tied = cfg.get("tie_word_embeddings")
    # None = config.json does not say; the weights (or the family's default) decide later.
    info.tied_embeddings = bool(tied) if tied is not None else None
    info.context_length = as_int(
        _first(text, "max_position_embeddings", "n_positions", "seq_length", "max_seq_len", "max_sequence_length", "n_ctx")
    )
    head_dim = as_int(text.get("head_dim"))
    if head_dim is None and info.hidden_size and info.num_heads:
        head_dim = info.hidden_size // info.num_heads
    info.head_dim = head_dim
    dtype = _first(text, "torch_dtype", "dtype") or _first(cfg, "torch_dtype", "dtype")
    info.dtype = str(dtype).removeprefix("torch.") if dtype else info.dtype
    quant = cfg.get("quantization_config") or text.get("quantization_config")
    info.quantization = dict(quant) if isinstance(quant, dict) else None
    info.mlp_gated = info.model_type not in NON_GATED_TYPES
    info.num_experts = as_int(_first(text, "num_local_experts", "num_experts", "n_routed_experts"))
    info.experts_per_token = as_int(_first(text, "num_experts_per_tok", "moe_topk"))
    if info.num_experts is not None and info.num_experts <= 1:
        info.num_experts = None


def config_linear_groups(info: ModelInfo, cfg: dict[str, Any] | None = None) -> dict[str, LinearGroup]:
    """Linear layers of a Llama-style block from config arithmetic (used when there are no weights)."""
    L, h, i = info.num_layers or 0, info.hidden_size or 0, info.intermediate_size or 0
    a, kv, hd = info.num_heads or 0, info.num_kv_heads or 0, info.head_dim or 0
    if not (L and h and a and hd):
        return {}
    q, k = a * hd, kv * hd

    def group(d_in: int, d_out: int, per_layer: int = 1) -> LinearGroup:
        n = L * per_layer
        return LinearGroup(n, n * d_in, n * d_out, n * d_in * d_out)

    fused = info.model_type in FUSED_PROJECTION_TYPES
    if fused:
        groups = {"qkv_proj": group(h, q + 2 * k), "o_proj": group(q, h)}
    else:
        groups = {"q_proj": group(h, q), "k_proj": group(h, k), "v_proj": group(h, k), "o_proj": group(q, h)}
    experts = info.num_experts or 0
    text = _text_config(cfg or {})
    moe_i = as_int(_first(text, "moe_intermediate_size", "expert_intermediate_size")) or i
    if experts:
        groups["gate_proj"] = group(h, moe_i, experts)
        groups["up_proj"] = group(h, moe_i, experts)
        groups["down_proj"] = group(moe_i, h, experts)
        groups["gate"] = group(h, experts)  # router
        shared_i = as_int(_first(text, "shared_expert_intermediate_size"))
        if shared_i:
            groups["shared_expert.gate_proj"] = group(h, shared_i)
            groups["shared_expert.up_proj"] = group(h, shared_i)
            groups["shared_expert.down_proj"] = group(shared_i, h)
    elif info.mlp_gated and fused:
        groups["gate_up_proj"] = group(h, 2 * i)
        groups["down_proj"] = group(i, h)
    elif info.mlp_gated:
        groups["gate_proj"] = group(h, i)
        groups["up_proj"] = group(h, i)
        groups["down_proj"] = group(i, h)
    else:
        groups["up_proj"] = group(h, i)
        groups["down_proj"] = group(i, h)
    return groups


def config_param_count(info: ModelInfo, cfg: dict[str, Any] | None = None) -> int | None:
    """Parameter count from config arithmetic (Llama, Qwen2, Mistral, Gemma-2, Phi-3 exact; other families approximate)."""
    L, h, V = info.num_layers, info.hidden_size, info.vocab_size
    if not (L and h and V):
        return None
    groups = info.linear_groups or config_linear_groups(info, cfg)
    linear = sum(g.numel for g in groups.values())
    if not groups:
        linear = L * (4 * h * h + (3 if info.mlp_gated else 2) * h * (info.intermediate_size or 4 * h))
    text = _text_config(cfg or {})
    bias = 0
    q = (info.num_heads or 0) * (info.head_dim or 0)
    k = (info.num_kv_heads or 0) * (info.head_dim or 0)
    if info.model_type in QKV_BIAS_TYPES or text.get("qkv_bias") or text.get("attention_bias"):
        bias += L * (q + 2 * k)
    if text.get("attention_bias"):
        bias += L * h
    if text.get("mlp_bias"):
        bias += L * ((2 if info.mlp_gated else 1) * (info.intermediate_size or 0) + h)
    norms = L * (4 if info.model_type in FOUR_NORM_TYPES else 2) * h + h
    if info.model_type in QK_NORM_TYPES:
        norms += L * 2 * (info.head_dim or 0)
    if info.model_type in NON_GATED_TYPES:
        norms *= 2  # LayerNorm has a bias
    embeddings = V * h * (1 if info.tied_embeddings else 2)
    return int(linear + bias + norms + embeddings)


def info_from_config(cfg: dict[str, Any], name: str = "config.json", path: str | None = None, source: str = "local") -> ModelInfo:
    """A :class:`ModelInfo` from a parsed ``config.json`` alone (bare config files, hub configs, the bench)."""
    info = ModelInfo(name=name, path=path, source=source)
    apply_config(info, cfg)
    default_tied(info)
    info.linear_groups = config_linear_groups(info, cfg)
    info.param_count = config_param_count(info, cfg)
    info.param_source = "config" if info.param_count else None
    if not info.has_arch:
        info.error = "config.json lacks the sizes needed (layers, hidden size, vocabulary)"
    return info


def info_from_config_file(path: str | Path) -> ModelInfo:
    """A bare ``config.json`` (what ``dpo-tui estimate --model config.json`` accepts)."""
    path = Path(path).expanduser()
    cfg, err = read_json(path)
    if cfg is None:
        raise UserError(f"Cannot use {path} as a model config: {err}")
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    info = info_from_config(cfg, name=name, path=str(path.resolve()), source="local")
    info.warnings.append("config only: parameter count from config arithmetic")
    return info


def read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read: {getattr(exc, 'strerror', None) or exc}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON at line {exc.lineno}: {exc.msg}"
    except JSON_ERRORS:
        return None, "invalid JSON: nested too deeply"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


def default_tied(info: ModelInfo) -> None:
    if info.tied_embeddings is None:
        info.tied_embeddings = info.model_type not in UNTIED_BY_DEFAULT
