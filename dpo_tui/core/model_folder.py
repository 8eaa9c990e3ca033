"""Model and adapter folders → facts: the folder's files, its ``config.json`` and its safetensors *headers*.

The headers give the exact parameter count and every linear layer's shape; weights are never read. A folder
that cannot be used (no config, no tokenizer, a corrupt header, a missing shard) comes back with ``error``
set instead of raising. Pure stdlib.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from .model_config import (
    apply_config,
    as_int,
    config_linear_groups,
    config_param_count,
    default_tied,
    read_json,
)
from .model_info import CONV1D_TYPES, TOKENIZER_FILES, WEIGHT_SUFFIXES, LinearGroup, ModelInfo
from .safetensors_header import SafetensorsError, read_header

# ---------------------------------------------------------------------------------------------
# safetensors headers → exact counts


def _weight_files(folder: Path, names: Sequence[str], adapter: bool = False) -> tuple[list[Path], str | None]:
    """The safetensors files that make up the model (index-listed shards first), or an error."""
    index_name = "adapter_model.safetensors.index.json" if adapter else "model.safetensors.index.json"
    if index_name in names:
        index, err = read_json(folder / index_name)
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


def _chat_template(folder: Path, names: Iterable[str]) -> bool:
    names = set(names)
    if "chat_template.jinja" in names or "chat_template.json" in names:
        return True
    if "tokenizer_config.json" in names:
        cfg, _ = read_json(folder / "tokenizer_config.json")
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
        if key in seen or not stat.S_ISREG(st.st_mode):
            continue
        seen.add(key)
        size += st.st_size
    return size


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
    cfg, err = read_json(folder / "config.json")
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
    default_tied(info)
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
    cfg, err = read_json(folder / "adapter_config.json")
    if cfg is None:
        info.error = f"adapter_config.json: {err}"
        return info
    info.base_model = cfg.get("base_model_name_or_path") or None
    info.adapter_rank = as_int(cfg.get("r"))
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
