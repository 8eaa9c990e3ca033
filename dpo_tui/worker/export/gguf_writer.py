"""A GGUF file for llama.cpp / Ollama, written with the ``gguf`` library from a model in memory.

llama.cpp tensor names, the Q/K row permutation llama.cpp applies to Llama-family attention, rope
scaling, the tokenizer (vocabulary, merges, token types, special ids, chat template) and the
architecture metadata. Llama, Mistral (written as ``llama``) and Qwen2; f16, bf16 or q8_0. Anything
else is refused with the list of what is supported. ``gguf``, ``numpy`` and ``torch`` are imported
only when a GGUF is written.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from ...core.export_plan import GGUF_ARCHITECTURES, unsupported_architecture
from .staging import Progress


@dataclass
class GGUFTensorPlan:
    """One tensor of the file: its llama.cpp name, where its data comes from, and how it is stored."""

    name: str
    hf_name: str  # "" for a tensor computed here (llama 3's rope factors)
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType
    nbytes: int
    transform: str = ""  # "", "permute_q", "permute_k"


def write_gguf(model: Any, tokenizer: Any, path: Path, out_type: str, progress: Progress,
               name: str = "", description: str = "") -> int:
    """Write ``model`` + ``tokenizer`` as a GGUF file at ``path``. Returns its size in bytes."""
    import gguf
    import numpy as np
    import torch

    config = model.config
    model_type = config.model_type
    if model_type not in GGUF_ARCHITECTURES:
        raise unsupported_architecture(model_type)
    arch_name = GGUF_ARCHITECTURES[model_type]
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch_name]
    if getattr(config, "mlp_bias", False):
        raise UserError(f"Cannot write a GGUF for this {model_type} model: it has MLP biases (mlp_bias=true), "
                        "which llama.cpp's llama architecture does not load")
    progress.stage("gguf", f"writing GGUF ({out_type}) to the {arch_name} architecture")

    n_layers = config.num_hidden_layers
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    hidden = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // n_head
    vocab_size = config.vocab_size

    writer = gguf.GGUFWriter(None, arch_name)
    qtypes = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
              "q8_0": gguf.GGMLQuantizationType.Q8_0}
    ftypes = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}

    # General and architecture metadata.
    writer.add_name(name or "dpo-tui export")
    if description:
        writer.add_description(description)
    writer.add_file_type(int(ftypes[out_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(vocab_size)
    if arch_name == "llama":
        writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = _rope_settings(config)
    writer.add_rope_freq_base(float(rope["theta"]))
    rope_freqs = _add_rope_scaling(writer, gguf, rope, head_dim, np)

    # Tokenizer.
    add_tokenizer_metadata(writer, gguf, tokenizer, vocab_size, progress)

    # Tensors: names, types and sizes first (header), then the data one tensor at a time.
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    name_map = gguf.get_tensor_name_map(arch, n_layers)
    plans: list[GGUFTensorPlan] = []
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"Cannot write a GGUF: no llama.cpp name for tensor '{hf_name}' of this {model_type} model",
                            hint="the model has parts llama.cpp's " + arch_name + " architecture does not know")
        shape = tuple(int(d) for d in tensor.shape)
        if len(shape) == 1 or out_type == "f32":
            qtype = gguf.GGMLQuantizationType.F32
        else:
            qtype = qtypes[out_type]
            if qtype == gguf.GGMLQuantizationType.Q8_0 and shape[-1] % 32 != 0:
                qtype = gguf.GGMLQuantizationType.F16  # llama.cpp does the same for rows that do not fit blocks
        transform = ""
        if arch_name == "llama" and ".attn_q." in gguf_name:
            transform = "permute_q"
        elif arch_name == "llama" and ".attn_k." in gguf_name:
            transform = "permute_k"
        plans.append(GGUFTensorPlan(gguf_name, hf_name, shape, qtype, _gguf_nbytes(gguf, shape, qtype), transform))
    if rope_freqs is not None:
        plans.append(GGUFTensorPlan("rope_freqs.weight", "", tuple(rope_freqs.shape), gguf.GGMLQuantizationType.F32,
                                    int(rope_freqs.nbytes)))

    for p in plans:
        writer.add_tensor_info(p.name, p.shape, np.dtype(np.float32), p.nbytes, raw_dtype=p.qtype)

    try:
        _write_gguf_data(writer, gguf, np, torch, state, plans, rope_freqs, path, n_head, n_kv, progress)
    finally:
        writer.close()
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    return path.stat().st_size


def _write_gguf_data(writer: Any, gguf: Any, np: Any, torch: Any, state: dict[str, Any], plans: list[GGUFTensorPlan],
                     rope_freqs: Any, path: Path, n_head: int, n_kv: int, progress: Progress) -> None:
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = len(plans)
    for i, p in enumerate(plans, 1):
        if p.hf_name:
            with torch.no_grad():
                data = state[p.hf_name].detach().to(torch.float32).cpu().numpy()
        else:
            data = rope_freqs
        if p.transform == "permute_q":
            data = permute_rows(data, n_head, n_head)
        elif p.transform == "permute_k":
            data = permute_rows(data, n_head, n_kv)
        if p.qtype == gguf.GGMLQuantizationType.F32:
            out = np.ascontiguousarray(data, dtype=np.float32)
        elif p.qtype == gguf.GGMLQuantizationType.F16:
            out = np.ascontiguousarray(data.astype(np.float16))
        else:
            out = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), p.qtype)
        writer.write_tensor_data(out)
        progress.progress("gguf", i, total, p.name)


def permute_rows(weights: Any, n_head: int, n_head_kv: int) -> Any:
    """llama.cpp's row order for Q/K of Llama-family models (rotary pairs interleaved per head).

    Hugging Face stores each head's rotary halves one after the other; llama.cpp's rope expects
    them interleaved. transformers' GGUF loader applies the inverse when reading the file back.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _gguf_nbytes(gguf: Any, shape: tuple[int, ...], qtype: Any) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows * (shape[-1] // block) * type_size


def _rope_settings(config: Any) -> dict[str, Any]:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(params, dict):
        params = {}
    theta = params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    rope_type = params.get("rope_type") or params.get("type") or "default"
    return {"theta": theta, "type": rope_type, "params": params,
            "max_positions": int(getattr(config, "max_position_embeddings", 0) or 0)}


def _add_rope_scaling(writer: Any, gguf: Any, rope: dict[str, Any], head_dim: int, np: Any) -> Any:
    """Rope scaling metadata (linear, yarn) or llama 3's per-dimension factors tensor. Others are refused."""
    kind, params = rope["type"], rope["params"]
    if kind in ("default", None):
        return None
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(params["factor"]))
        return None
    if kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(params["factor"]))
        original = params.get("original_max_position_embeddings") or rope["max_positions"]
        writer.add_rope_scaling_orig_ctx_len(int(original))
        return None
    if kind == "llama3":
        # Per-dimension divisors of the rotary frequencies (what transformers' llama3 rope computes).
        factor = float(params["factor"])
        low = float(params.get("low_freq_factor", 1.0))
        high = float(params.get("high_freq_factor", 4.0))
        old_ctx = float(params.get("original_max_position_embeddings", 8192))
        inv_freq = 1.0 / (rope["theta"] ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
        wavelen = 2 * np.pi / inv_freq
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        smooth = (old_ctx / wavelen - low) / (high - low)
        factors = np.where(wavelen < high_wavelen, 1.0,
                           np.where(wavelen > low_wavelen, factor, 1.0 / ((1 - smooth) / factor + smooth)))
        return factors.astype(np.float32)
    raise UserError(f"Cannot write a GGUF: rope scaling '{kind}' is not supported (supported: linear, yarn, llama3)",
                    hint="export --merged DIR and convert it with llama.cpp's convert_hf_to_gguf.py")




# --- the tokenizer in GGUF --------------------------------------------------------------------------
def _known_splits() -> dict[str, str]:
    """Pre-tokenizer split regex → llama.cpp pre-tokenizer name."""
    names: dict[str, str] = {}
    preferred = {"qwen2": "qwen2", "llama3": "llama-bpe"}
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # pragma: no cover - older transformers
        return names
    for pre_name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
        names.setdefault(regex, preferred.get(pre_name, pre_name))
    for pre_name, canonical in preferred.items():
        if pre_name in GGUF_PRE_TOKENIZER_SPLITS:
            names[GGUF_PRE_TOKENIZER_SPLITS[pre_name]] = canonical
    return names


def _pre_tokenizer_name(tok_json: dict[str, Any], progress: Progress) -> str:
    pre = tok_json.get("pre_tokenizer") or {}
    items = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    splits = [p for p in items if p.get("type") == "Split"]
    byte_level = [p for p in items if p.get("type") == "ByteLevel"]
    if not splits and byte_level and byte_level[0].get("use_regex", True):
        return "gpt-2"
    if len(splits) == 1:
        pattern = (splits[0].get("pattern") or {}).get("Regex")
        name = _known_splits().get(pattern or "")
        if name:
            return name
    progress.warn("the tokenizer's pre-tokenizer is not one llama.cpp knows by name; the GGUF says 'default', "
                  "so llama.cpp may split text slightly differently than transformers")
    return "default"


def add_tokenizer_metadata(writer: Any, gguf: Any, tokenizer: Any, vocab_size: int, progress: Progress) -> None:
    """Vocabulary, merges, token types, special ids, add-BOS/EOS flags and the chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("Cannot write a GGUF: the tokenizer has no tokenizer.json (fast tokenizer) to read the vocabulary from")
    tok_json = json.loads(backend.to_str())
    model = tok_json.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(f"Cannot write a GGUF: tokenizer type '{model.get('type')}' is not supported (supported: BPE)")
    spm = bool(model.get("byte_fallback"))
    vocab: dict[str, int] = model.get("vocab") or {}
    added = {int(t["id"]): t for t in tok_json.get("added_tokens") or []}
    id_to_token = {i: t for t, i in vocab.items()}
    for i, t in added.items():
        id_to_token[i] = t["content"]
    highest = max(id_to_token) if id_to_token else -1
    if highest >= vocab_size:
        raise UserError(
            f"Cannot write a GGUF: the tokenizer has token id {highest} but the model's embedding has {vocab_size} rows",
            hint="the tokenizer gained tokens without resizing the model's embeddings",
        )
    raw_merges = model.get("merges") or []
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw_merges]
    unk = getattr(tokenizer, "unk_token", None)

    tokens: list[str] = []
    types: list[int] = []
    scores: list[float] = []
    merge_rank: dict[str, int] = {}
    if spm:
        for rank, merge in enumerate(merges):
            merge_rank.setdefault(merge.replace(" ", ""), rank)
    for i in range(vocab_size):
        text = id_to_token.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            scores.append(-1000.0)
            continue
        tokens.append(text)
        info = added.get(i)
        if spm and text == unk:
            types.append(gguf.TokenType.UNKNOWN)
        elif info is not None and info.get("special"):
            types.append(gguf.TokenType.CONTROL)
        elif info is not None:
            types.append(gguf.TokenType.USER_DEFINED)
        elif spm and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
        scores.append(-float(merge_rank[text]) if text in merge_rank else 0.0)

    if spm:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        if merges:
            writer.add_token_merges(merges)
        writer.add_add_space_prefix(_adds_space_prefix(tok_json))
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(_pre_tokenizer_name(tok_json, progress))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)

    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("pad_token_id", writer.add_pad_token_id), ("unk_token_id", writer.add_unk_token_id)):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int) and 0 <= value < vocab_size:
            add(value)
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    writer.add_add_bos_token(bool(probe) and bos is not None and probe[0] == bos)
    writer.add_add_eos_token(bool(probe) and eos is not None and probe[-1] == eos)
    template = getattr(tokenizer, "chat_template", None)
    if template:
        writer.add_chat_template(template)
    else:
        progress.warn("the tokenizer has no chat template; the GGUF carries none")


def _adds_space_prefix(tok_json: dict[str, Any]) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") in ("first", "always"):
                return True
            if node.get("type") == "Prepend" and node.get("prepend") == "\u2581":
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(tok_json.get("normalizer")) or walk(tok_json.get("pre_tokenizer"))
