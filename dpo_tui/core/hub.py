"""The Hugging Face cache and offline switches: one reading of the environment for models, datasets and tokenizers.

The cache layout is ``<cache>/<kind>s--<org>--<name>/{refs/<ref>, snapshots/<commit>/, blobs/}``. Models,
datasets and tokenizers all resolve through :func:`cached_snapshot`; nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

RepoType = Literal["model", "dataset"]

_TRUE = ("1", "true", "yes", "on")

# The variables that turn the hub off. ``DPO_TUI_OFFLINE`` is ours and covers models and datasets alike;
# the library variables are honoured as their own libraries define them.
OFFLINE_VARS: dict[RepoType, tuple[str, ...]] = {
    "model": ("DPO_TUI_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
    "dataset": ("DPO_TUI_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"),
}


def env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline(repo_type: RepoType = "model") -> bool:
    """True when the operator turned the hub off for this kind of repository."""
    return any(env_true(name) for name in OFFLINE_VARS[repo_type])


def offline_reason(repo_type: RepoType = "model") -> str:
    """Which variable turned the hub off (for messages), or '' when online."""
    for name in OFFLINE_VARS[repo_type]:
        if env_true(name):
            return name
    return ""


def hub_cache_dir() -> Path:
    """The hub cache: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``.

    Read at call time, not at import, so a test or a shell can point it elsewhere.
    """
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_folder(repo_id: str, repo_type: RepoType = "model", cache: Path | None = None) -> Path:
    """Where the cache keeps one repository (it may not exist)."""
    return (cache or hub_cache_dir()) / (f"{repo_type}s--" + repo_id.replace("/", "--"))


def snapshot_in(repo_dir: Path, revision: str | None = None) -> tuple[Path | None, str | None]:
    """The snapshot folder of ``revision`` (a ref name or a commit; default ``main``) and its commit.

    Without a revision, a missing ``refs/main`` falls back to the newest snapshot. Unreadable folders
    count as absent: a cache is never a reason to crash.
    """
    snapshots = repo_dir / "snapshots"
    ref = revision or "main"
    commit = None
    ref_file = repo_dir / "refs" / ref
    try:
        if ref_file.is_file():
            commit = ref_file.read_text(encoding="utf-8").strip() or None
        elif revision and (snapshots / revision).is_dir():
            commit = revision
        if commit and (snapshots / commit).is_dir():
            return snapshots / commit, commit
        if revision:
            return None, None
        candidates = [p for p in snapshots.iterdir() if p.is_dir()]
    except (OSError, UnicodeDecodeError, ValueError):
        return None, None
    if not candidates:
        return None, None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return newest, newest.name


def cached_snapshot(repo_id: str, repo_type: RepoType = "model", revision: str | None = None) -> Path | None:
    """The cached snapshot folder of a hub repository, or None when it is not in the cache."""
    snap, _ = snapshot_in(repo_folder(repo_id, repo_type), revision)
    return snap
