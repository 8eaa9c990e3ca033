"""Which models are on this box, and the facts about each that a VRAM estimate needs.

Sources, in the order :func:`discover_models` lists them:

- the bundled sample (``sample_data/tiny-chat``), always first;
- the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
  repo id, revision and size on disk per cached model;
- extra model roots from the settings, scanned one or two folders deep;
- a typed hub id (:func:`inspect_model`): read from the cache, else its ``config.json`` is fetched
  when the hub is reachable (never the weights).

Facts come from ``config.json`` (layers, sizes, heads, vocabulary, …) and from the safetensors
*headers* (the exact parameter count and every linear layer's shape); weights are never read.
A folder that cannot be used (no config, no tokenizer, a corrupt safetensors header, a missing
shard) is listed with ``error`` set to the reason instead of being hidden or raising.

Pure stdlib: no torch, no transformers (DESIGN.md §2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths
from .errors import UserError
from .safetensors_header import SafetensorsError, read_header

SAMPLE_NAME = "tiny-chat (sample)"

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer.tiktoken")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Architectures whose MLP is a plain up/act/down (no gate); everything else is treated as gated (SwiGLU).
NON_GATED_TYPES = {"gpt2", "gpt_neox", "gptj", "phi", "falcon", "opt", "bloom", "gpt_bigcode", "starcoder2", "mpt", "codegen"}
# Architectures whose blocks use GPT-2's Conv1D (weights stored as [in, out] instead of [out, in]).
CONV1D_TYPES = {"gpt2", "imagegpt", "decision_transformer"}
# Model types whose q/k/v projections carry a bias although config.json does not say so.
QKV_BIAS_TYPES = {"qwen", "qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"}
# Model types whose config omits tie_word_embeddings but whose class default is "untied".
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


# ---------------------------------------------------------------------------------------------
# config.json → facts


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


def _as_int(value: Any) -> int | None:
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
    info.num_layers = _as_int(_first(text, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    info.hidden_size = _as_int(_first(text, "hidden_size", "n_embd", "d_model", "dim"))
    info.num_heads = _as_int(_first(text, "num_attention_heads", "n_head", "num_heads", "n_heads"))
    kv = _as_int(_first(text, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"))
    if kv is None and text.get("multi_query") is True:
        kv = 1
    info.num_kv_heads = kv if kv is not None else info.num_heads
    inter = _as_int(_first(text, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "inner_hidden_size"))
    if inter is None and info.hidden_size:
        inter = 4 * info.hidden_size
    if info.model_type == "qwen" and inter:  # Qwen v1 stores 2 × the per-projection width
        inter //= 2
    info.intermediate_size = inter
    info.vocab_size = _as_int(_first(text, "vocab_size", "padded_vocab_size")) or _as_int(cfg.get("vocab_size"))
    tied = _first(text, "tie_word_embeddings")
    if tied is None:
        tied = cfg.get("tie_word_embeddings")
    # None = config.json does not say; the weights (or the family's default) decide later.
    info.tied_embeddings = bool(tied) if tied is not None else None
    info.context_length = _as_int(
        _first(text, "max_position_embeddings", "n_positions", "seq_length", "max_seq_len", "max_sequence_length", "n_ctx")
    )
    head_dim = _as_int(text.get("head_dim"))
    if head_dim is None and info.hidden_size and info.num_heads:
        head_dim = info.hidden_size // info.num_heads
    info.head_dim = head_dim
    dtype = _first(text, "torch_dtype", "dtype") or _first(cfg, "torch_dtype", "dtype")
    info.dtype = str(dtype).removeprefix("torch.") if dtype else info.dtype
    quant = cfg.get("quantization_config") or text.get("quantization_config")
    info.quantization = dict(quant) if isinstance(quant, dict) else None
    info.mlp_gated = info.model_type not in NON_GATED_TYPES
    info.num_experts = _as_int(_first(text, "num_local_experts", "num_experts", "n_routed_experts"))
    info.experts_per_token = _as_int(_first(text, "num_experts_per_tok", "moe_topk"))
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

    groups = {"q_proj": group(h, q), "k_proj": group(h, k), "v_proj": group(h, k), "o_proj": group(q, h)}
    experts = info.num_experts or 0
    text = _text_config(cfg or {})
    moe_i = _as_int(_first(text, "moe_intermediate_size", "expert_intermediate_size")) or i
    if experts:
        groups["gate_proj"] = group(h, moe_i, experts)
        groups["up_proj"] = group(h, moe_i, experts)
        groups["down_proj"] = group(moe_i, h, experts)
        groups["gate"] = group(h, experts)  # router
        shared_i = _as_int(_first(text, "shared_expert_intermediate_size"))
        if shared_i:
            groups["shared_expert.gate_proj"] = group(h, shared_i)
            groups["shared_expert.up_proj"] = group(h, shared_i)
            groups["shared_expert.down_proj"] = group(shared_i, h)
    elif info.mlp_gated:
        groups["gate_proj"] = group(h, i)
        groups["up_proj"] = group(h, i)
        groups["down_proj"] = group(i, h)
    else:
        groups["up_proj"] = group(h, i)
        groups["down_proj"] = group(i, h)
    return groups


def config_param_count(info: ModelInfo, cfg: dict[str, Any] | None = None) -> int | None:
    """Parameter count from config arithmetic (Llama/Qwen/Mistral exact; other families approximate)."""
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
    norms = L * 2 * h + h
    if info.model_type in NON_GATED_TYPES:
        norms *= 2  # LayerNorm has a bias
    embeddings = V * h * (1 if info.tied_embeddings else 2)
    return int(linear + bias + norms + embeddings)


def info_from_config(cfg: dict[str, Any], name: str = "config.json", path: str | None = None, source: str = "local") -> ModelInfo:
    """A :class:`ModelInfo` from a parsed ``config.json`` alone (bare config files, hub configs, the bench)."""
    info = ModelInfo(name=name, path=path, source=source)
    apply_config(info, cfg)
    _default_tied(info)
    info.linear_groups = config_linear_groups(info, cfg)
    info.param_count = config_param_count(info, cfg)
    info.param_source = "config" if info.param_count else None
    if not info.has_arch:
        info.error = "config.json lacks the sizes needed (layers, hidden size, vocabulary)"
    return info


def info_from_config_file(path: str | Path) -> ModelInfo:
    """A bare ``config.json`` (what ``dpo-tui estimate --model config.json`` accepts)."""
    path = Path(path).expanduser()
    cfg, err = _read_json(path)
    if cfg is None:
        raise UserError(f"Cannot use {path} as a model config: {err}")
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    info = info_from_config(cfg, name=name, path=str(path.resolve()), source="local")
    info.warnings.append("config only: parameter count from config arithmetic")
    return info


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
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
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


# ---------------------------------------------------------------------------------------------
# safetensors headers → exact counts


def _weight_files(folder: Path, names: Sequence[str], adapter: bool = False) -> tuple[list[Path], str | None]:
    """The safetensors files that make up the model (index-listed shards first), or an error."""
    index_name = "adapter_model.safetensors.index.json" if adapter else "model.safetensors.index.json"
    if index_name in names:
        index, err = _read_json(folder / index_name)
        if index is None:
            return [], f"{index_name}: {err}"
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            return [], f"{index_name}: no weight_map"
        files = sorted(set(str(v) for v in weight_map.values()))
        missing = [f for f in files if not (folder / f).exists()]
        if missing:
            return [], f"missing shard {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
        return [folder / f for f in files], None
    files = sorted(n for n in names if n.endswith(".safetensors"))
    if adapter:
        files = [n for n in files if n.startswith("adapter_model")]
    else:
        files = [n for n in files if not n.startswith("adapter_model")]
    return [folder / n for n in files], None


def _block_module(name: str) -> str | None:
    """``model.layers.3.self_attn.q_proj.weight`` → ``q_proj``; None outside the numbered blocks."""
    parts = name.split(".")
    if len(parts) < 3 or parts[-1] != "weight":
        return None
    if not any(p.isdigit() for p in parts[:-2]):
        return None
    module = parts[-2]
    low = module.lower()
    if "norm" in low or low.startswith("ln") or "embed" in low:
        return None
    # Mixture-of-experts: experts.<n>.w1 → keep the name after the expert index
    return module


def apply_safetensors(info: ModelInfo, files: Sequence[Path]) -> str | None:
    """Exact parameter count, dtype and linear-layer shapes from headers; returns an error string or None."""
    total = 0
    data_bytes = 0
    dtypes: dict[str, int] = {}
    groups: dict[str, list[int]] = {}
    has_lm_head = False
    conv1d = info.model_type in CONV1D_TYPES
    for file in files:
        try:
            header = read_header(file)
        except SafetensorsError as exc:
            return f"corrupt safetensors header in {file.name}: {exc}"
        data_bytes += header.data_bytes
        for tensor in header.tensors:
            n = tensor.numel
            total += n
            dtypes[tensor.dtype] = dtypes.get(tensor.dtype, 0) + n
            if tensor.name.endswith(("lm_head.weight", "embed_out.weight")) or tensor.name == "output.weight":
                has_lm_head = True
            module = _block_module(tensor.name) if len(tensor.shape) == 2 else None
            if module is None:
                continue
            rows, cols = tensor.shape
            d_in, d_out = (rows, cols) if conv1d else (cols, rows)
            g = groups.setdefault(module, [0, 0, 0, 0])
            g[0] += 1
            g[1] += d_in
            g[2] += d_out
            g[3] += n
    info.weight_bytes = data_bytes
    if not files:
        return None
    if info.quantization:
        # Packed quantized weights: the header count is not the model's parameter count.
        info.warnings.append("quantized checkpoint: parameter count from config arithmetic")
    else:
        info.param_count = total
        info.param_source = "safetensors"
        if groups:
            info.linear_groups = {k: LinearGroup(*v) for k, v in groups.items()}
    if dtypes and not info.dtype:
        info.dtype = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(max(dtypes, key=lambda d: dtypes[d]))
    if info.tied_embeddings is None and total:
        info.tied_embeddings = not has_lm_head
    return None


def _default_tied(info: ModelInfo) -> None:
    if info.tied_embeddings is None:
        info.tied_embeddings = info.model_type not in UNTIED_BY_DEFAULT


# ---------------------------------------------------------------------------------------------
# folders


def _chat_template(folder: Path, names: Iterable[str]) -> bool:
    names = set(names)
    if "chat_template.jinja" in names or "chat_template.json" in names:
        return True
    if "tokenizer_config.json" in names:
        cfg, _ = _read_json(folder / "tokenizer_config.json")
        if cfg and cfg.get("chat_template"):
            return True
    return False


def _folder_size(folder: Path, names: Iterable[str]) -> int:
    seen: set[tuple[int, int]] = set()
    size = 0
    for name in names:
        try:
            st = (folder / name).stat()  # follows the cache's symlinks to blobs
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen or not _is_regular(st.st_mode):
            continue
        seen.add(key)
        size += st.st_size
    return size


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def inspect_dir(
    folder: str | Path,
    name: str | None = None,
    source: str = "local",
    repo_id: str | None = None,
    revision: str | None = None,
    partial_ok: bool = False,
) -> ModelInfo:
    """Facts about one model (or adapter) folder. Never raises for a broken folder: ``error`` says why.

    ``partial_ok``: a hub snapshot that holds only some files (e.g. just ``config.json``) is not an
    error; missing weights and tokenizer become warnings (the trainer fetches them).
    """
    folder = Path(folder).expanduser()
    info = ModelInfo(name=name or folder.name, path=str(folder), source=source, repo_id=repo_id, revision=revision)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        info.error = "folder not found"
        return info
    except NotADirectoryError:
        info.error = "not a folder"
        return info
    except OSError as exc:
        info.error = f"cannot read folder: {exc.strerror}"
        return info
    info.size_bytes = _folder_size(folder, names)
    info.has_tokenizer = any(n in names for n in TOKENIZER_FILES)
    info.has_chat_template = _chat_template(folder, names)

    if "adapter_config.json" in names:
        return _inspect_adapter(info, folder, names)

    if "config.json" not in names:
        has_weights = any(n.endswith(WEIGHT_SUFFIXES) for n in names)
        info.error = "no config.json" + (" (weights without a config)" if has_weights else "")
        return info
    cfg, err = _read_json(folder / "config.json")
    if cfg is None:
        info.error = f"config.json: {err}"
        return info
    apply_config(info, cfg)

    files, err = _weight_files(folder, names)
    if err and partial_ok and err.startswith("missing shard"):
        info.warnings.append(f"{err} (not downloaded): parameter count from config arithmetic")
        files, err = [], None
    if err:
        info.error = err
    else:
        err = apply_safetensors(info, files)
        if err:
            info.error = err
    _default_tied(info)
    if info.param_count is None:
        info.linear_groups = info.linear_groups or config_linear_groups(info, cfg)
        info.param_count = config_param_count(info, cfg)
        info.param_source = "config" if info.param_count else None
        if not files and info.error is None:
            if any(n.endswith((".bin", ".pt", ".pth")) for n in names):
                info.warnings.append("weights are not safetensors: parameter count from config arithmetic")
            elif partial_ok:
                info.warnings.append("weights not downloaded: parameter count from config arithmetic")
            else:
                info.warnings.append("no weight files: parameter count from config arithmetic")
    if not info.linear_groups:
        info.linear_groups = config_linear_groups(info, cfg)

    if info.error is None and not info.has_tokenizer:
        if partial_ok:
            info.warnings.append("tokenizer not downloaded")
        else:
            info.error = "no tokenizer (tokenizer.json or tokenizer.model)"
    if info.error is None and not info.has_arch:
        info.error = "config.json lacks the sizes needed (layers, hidden size, vocabulary)"
    return info


def _inspect_adapter(info: ModelInfo, folder: Path, names: Sequence[str]) -> ModelInfo:
    info.is_adapter = True
    cfg, err = _read_json(folder / "adapter_config.json")
    if cfg is None:
        info.error = f"adapter_config.json: {err}"
        return info
    info.base_model = cfg.get("base_model_name_or_path") or None
    info.adapter_rank = _as_int(cfg.get("r"))
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    info.adapter_targets = [str(t) for t in targets or []]
    peft_type = cfg.get("peft_type") or "adapter"
    info.architecture = f"{peft_type} adapter" + (f" (r={info.adapter_rank})" if info.adapter_rank else "")
    info.model_type = str(peft_type).lower()
    files, err = _weight_files(folder, names, adapter=True)
    if err:
        info.error = err
        return info
    if not files and not any(n.startswith("adapter_model") for n in names):
        info.error = "adapter_config.json but no adapter_model.safetensors"
        return info
    total = 0
    for file in files:
        try:
            total += read_header(file).parameter_count
        except SafetensorsError as exc:
            info.error = f"corrupt safetensors header in {file.name}: {exc}"
            return info
    info.param_count = total or None
    info.param_source = "safetensors" if total else None
    if not info.base_model:
        info.warnings.append("adapter_config.json names no base model")
    return info


def _looks_like_model(names: Sequence[str]) -> bool:
    return (
        "config.json" in names
        or "adapter_config.json" in names
        or any(n.endswith(WEIGHT_SUFFIXES) for n in names)
        or any(n in names for n in TOKENIZER_FILES)
    )


def scan_root(root: str | Path, source: str = "settings-root", depth: int = 2) -> list[ModelInfo]:
    """Model folders under ``root`` (the root itself, its children, and grandchildren when depth is 2)."""
    root = Path(root).expanduser()
    found: list[ModelInfo] = []

    def visit(folder: Path, level: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        names = [e.name for e in entries]
        if _looks_like_model(names):
            found.append(inspect_dir(folder, source=source))
            # A model folder may hold adapters or checkpoints one level down.
            if level < depth:
                for entry in entries:
                    if entry.is_dir() and not entry.name.startswith("."):
                        try:
                            sub = os.listdir(entry.path)
                        except OSError:
                            continue
                        if "adapter_config.json" in sub or "config.json" in sub:
                            found.append(inspect_dir(entry.path, name=f"{folder.name}/{entry.name}", source=source))
            return
        if level >= depth:
            return
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                visit(Path(entry.path), level + 1)

    if root.is_dir():
        visit(root, 0)
    return found


# ---------------------------------------------------------------------------------------------
# Hugging Face cache


def hf_cache_dir() -> Path:
    """The hub cache, honouring ``HF_HUB_CACHE`` and ``HF_HOME`` (read now, not at import)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _repo_folder(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def _snapshot(repo_dir: Path, revision: str | None = None) -> tuple[Path | None, str | None]:
    """The snapshot folder for ``revision`` (a ref name or commit; default ``main``), else the newest one."""
    snapshots = repo_dir / "snapshots"
    ref = revision or "main"
    commit = None
    ref_file = repo_dir / "refs" / ref
    if ref_file.is_file():
        try:
            commit = ref_file.read_text(encoding="utf-8").strip()
        except OSError:
            commit = None
    elif revision and (snapshots / revision).is_dir():
        commit = revision
    if commit and (snapshots / commit).is_dir():
        return snapshots / commit, commit
    if revision:
        return None, None
    try:
        candidates = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None, None
    if not candidates:
        return None, None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return newest, newest.name


def scan_hf_cache(cache: str | Path | None = None) -> list[ModelInfo]:
    """Every model repo in the hub cache (datasets and spaces are skipped)."""
    cache_dir = Path(cache).expanduser() if cache else hf_cache_dir()
    try:
        repos = sorted(p for p in cache_dir.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError:
        return []
    found = []
    for repo_dir in repos:
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        found.append(_from_cache_repo(repo_dir, repo_id))
    return found


def _from_cache_repo(repo_dir: Path, repo_id: str, revision: str | None = None) -> ModelInfo:
    snap, commit = _snapshot(repo_dir, revision)
    if snap is None:
        info = ModelInfo(name=repo_id, path=str(repo_dir), source="hf-cache", repo_id=repo_id, revision=revision)
        info.error = "no snapshot in the cache" + (f" for revision {revision}" if revision else "")
        return info
    info = inspect_dir(snap, name=repo_id, source="hf-cache", repo_id=repo_id, revision=commit, partial_ok=True)
    return info


def find_in_cache(repo_id: str, revision: str | None = None) -> ModelInfo | None:
    repo_dir = _repo_folder(repo_id)
    if not repo_dir.is_dir():
        return None
    return _from_cache_repo(repo_dir, repo_id, revision)


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DPO_TUI_OFFLINE"))


def fetch_hub_config(repo_id: str, revision: str | None = None) -> ModelInfo:
    """Fetch only ``config.json`` (and the safetensors headers, when the hub serves them) for a hub id."""
    info = ModelInfo(name=repo_id, source="hub", repo_id=repo_id, revision=revision)
    if _offline():
        info.error = "not in the Hugging Face cache, and the hub is off (HF_HUB_OFFLINE)"
        return info
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        info.error = "not in the Hugging Face cache (huggingface_hub is not installed)"
        return info
    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision)
    except Exception as exc:  # noqa: BLE001 - network/auth/404: report, never crash
        kind = type(exc).__name__
        info.error = f"not in the Hugging Face cache and the hub did not answer ({kind})"
        return info
    info = inspect_dir(Path(path).parent, name=repo_id, source="hub", repo_id=repo_id, revision=revision, partial_ok=True)
    try:
        from huggingface_hub import get_safetensors_metadata

        meta = get_safetensors_metadata(repo_id, revision=revision)
        count = sum(int(v) for v in meta.parameter_count.values())
        if count and not info.quantization:
            info.param_count = count
            info.param_source = "safetensors"
    except Exception:  # noqa: BLE001 - optional refinement
        pass
    return info


# ---------------------------------------------------------------------------------------------
# entry points


def sample_info() -> ModelInfo:
    folder = paths.sample_model_dir()
    if not folder.is_dir():
        return ModelInfo(name=SAMPLE_NAME, path=str(folder), source="sample", error="sample model not built yet (run `make sample`)")
    info = inspect_dir(folder, name=SAMPLE_NAME, source="sample")
    return info


def discover_models(extra_roots: Sequence[Path] = (), include_cache: bool = True) -> list[ModelInfo]:
    """Sample first, then the hub cache, then each extra root. Headers only: fast enough for a UI list."""
    models = [sample_info()]
    if include_cache:
        models += scan_hf_cache()
    seen = {os.path.realpath(m.path) for m in models if m.path}
    for root in extra_roots:
        for info in scan_root(root):
            real = os.path.realpath(info.path) if info.path else None
            if real in seen:
                continue
            seen.add(real)
            models.append(info)
    link_adapters(models)
    return models


def link_adapters(models: Sequence[ModelInfo]) -> None:
    """List each adapter under the base it names (by path, repo id or folder name)."""
    by_key: dict[str, ModelInfo] = {}
    for m in models:
        if m.is_adapter:
            continue
        if m.path:
            by_key.setdefault(os.path.realpath(m.path), m)
        if m.repo_id:
            by_key.setdefault(m.repo_id, m)
        by_key.setdefault(m.name, m)
    for m in models:
        if not (m.is_adapter and m.base_model):
            continue
        base = by_key.get(m.base_model) or by_key.get(os.path.realpath(os.path.expanduser(m.base_model)))
        if base is None:
            base = by_key.get(Path(m.base_model).name)
        if base is not None and m.path and m.path not in base.adapters:
            base.adapters.append(m.path)


def inspect_model(spec: str) -> ModelInfo:
    """One model from what an operator typed: ``sample``, a folder, a ``config.json``, or a hub id.

    Raises :class:`UserError` only for input that names nothing usable (empty, a missing path that
    is not a hub id); a folder or repo that exists but is broken comes back with ``error`` set.
    """
    from .config import looks_like_hub_id

    spec = (spec or "").strip()
    if not spec:
        raise UserError("No model given", hint="pass a folder, a config.json, a hub id like org/name, or 'sample'")
    if spec == "sample":
        return sample_info()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".json":
            return info_from_config_file(path)
        raise UserError(f"{spec} is a file, not a model folder", hint="pass the folder that holds config.json, or the config.json itself")
    if path.is_dir():
        if path.name.startswith("models--"):
            repo_id = path.name[len("models--") :].replace("--", "/")
            return _from_cache_repo(path, repo_id)
        info = inspect_dir(path)
        if info.error == "no config.json" and not info.is_adapter:
            # A parent folder of models: say so instead of a bare error.
            children = [p.name for p in path.iterdir() if p.is_dir() and (p / "config.json").exists()][:3]
            if children:
                info.error = f"no config.json here; model folders inside: {', '.join(children)}"
        return info
    repo, _, revision = spec.partition("@")
    if looks_like_hub_id(repo):
        cached = find_in_cache(repo, revision or None)
        if cached is not None and cached.error is None:
            return cached
        fetched = fetch_hub_config(repo, revision or None)
        if fetched.error and cached is not None:
            return cached
        return fetched
    raise UserError(f"No model at '{spec}'", hint="pass a folder, a config.json, a hub id like org/name, or 'sample'")
