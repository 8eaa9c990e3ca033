"""Which models are on this box, and the facts about each that a VRAM estimate needs.

Sources, in the order :func:`discover_models` lists them:

- the bundled sample (``sample_data/tiny-chat``), always first;
- the Hugging Face cache (:func:`dpo_tui.core.hub.hub_cache_dir`): repo id, revision and size on disk
  per cached model;
- extra model roots from the settings, scanned one or two folders deep;
- a typed hub id (:func:`inspect_model`): read from the cache, else its ``config.json`` is fetched
  when the hub is reachable (never the weights; ``DPO_TUI_OFFLINE`` and the hub's own offline
  variables stop the fetch).

The facts themselves come from :mod:`.model_config` (``config.json``) and :mod:`.model_folder`
(folders and safetensors headers); :class:`ModelInfo` lives in :mod:`.model_info`. Everything is
re-exported here, the one import path for the rest of the console.

Pure stdlib: no torch, no transformers (docs/design/import-worlds.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from . import hub, paths
from .errors import UserError
from .model_config import (
    apply_config,
    config_linear_groups,
    config_param_count,
    info_from_config,
    info_from_config_file,
)
from .model_folder import apply_safetensors, inspect_dir, scan_root
from .model_info import (
    CONV1D_TYPES,
    NON_GATED_TYPES,
    QKV_BIAS_TYPES,
    TOKENIZER_FILES,
    UNTIED_BY_DEFAULT,
    WEIGHT_SUFFIXES,
    LinearGroup,
    ModelInfo,
    format_params,
)

__all__ = [
    "CONV1D_TYPES", "NON_GATED_TYPES", "QKV_BIAS_TYPES", "SAMPLE_NAME", "TOKENIZER_FILES", "UNTIED_BY_DEFAULT",
    "WEIGHT_SUFFIXES", "LinearGroup", "ModelInfo", "apply_config", "apply_safetensors", "config_linear_groups",
    "config_param_count", "discover_models", "fetch_hub_config", "find_in_cache", "format_params", "info_from_config",
    "info_from_config_file", "inspect_dir", "inspect_model", "link_adapters", "sample_info", "scan_hf_cache", "scan_root",
]

SAMPLE_NAME = "tiny-chat (sample)"

_CACHE_PREFIX = "models--"


# ---------------------------------------------------------------------------------------------
# Hugging Face cache


def scan_hf_cache(cache: str | Path | None = None) -> list[ModelInfo]:
    """Every model repo in the hub cache (datasets and spaces are skipped)."""
    cache_dir = Path(cache).expanduser() if cache else hub.hub_cache_dir()
    try:
        repos = sorted(p for p in cache_dir.iterdir() if p.name.startswith(_CACHE_PREFIX) and p.is_dir())
    except OSError:
        return []
    found = []
    for repo_dir in repos:
        repo_id = repo_dir.name[len(_CACHE_PREFIX) :].replace("--", "/")
        found.append(_from_cache_repo(repo_dir, repo_id))
    return found


def _from_cache_repo(repo_dir: Path, repo_id: str, revision: str | None = None) -> ModelInfo:
    snap, commit = hub.snapshot_in(repo_dir, revision)
    if snap is None:
        info = ModelInfo(name=repo_id, path=str(repo_dir), source="hf-cache", repo_id=repo_id, revision=revision)
        info.error = "no snapshot in the cache" + (f" for revision {revision}" if revision else "")
        return info
    return inspect_dir(snap, name=repo_id, source="hf-cache", repo_id=repo_id, revision=commit, partial_ok=True)


def find_in_cache(repo_id: str, revision: str | None = None) -> ModelInfo | None:
    repo_dir = hub.repo_folder(repo_id, "model")
    if not repo_dir.is_dir():
        return None
    return _from_cache_repo(repo_dir, repo_id, revision)


def fetch_hub_config(repo_id: str, revision: str | None = None) -> ModelInfo:
    """Fetch only ``config.json`` (and the safetensors headers, when the hub serves them) for a hub id."""
    info = ModelInfo(name=repo_id, source="hub", repo_id=repo_id, revision=revision)
    if hub.offline("model"):
        info.error = f"not in the Hugging Face cache, and the hub is off ({hub.offline_reason('model')})"
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
            if info.path:
                real = os.path.realpath(info.path)
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
        if path.name.startswith(_CACHE_PREFIX):
            repo_id = path.name[len(_CACHE_PREFIX) :].replace("--", "/")
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
