"""Where things live: the runs root, settings, and the bundled sample data.

Resolved at call time (never at import) so tests and the CLI can point them elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = PACKAGE_DIR.parent


def data_home() -> Path:
    """``$DPO_TUI_HOME``, else the platform's user data dir (XDG on Linux)."""
    env = os.environ.get("DPO_TUI_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "dpo-tui"


def runs_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The one runs root every login sees: ``--runs-dir``, else ``$DPO_TUI_HOME/runs``, else the data dir."""
    if override:
        return Path(override).expanduser().resolve()
    return (data_home() / "runs").resolve()


def settings_path() -> Path:
    env = os.environ.get("DPO_TUI_SETTINGS")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "dpo-tui" / "settings.toml"


def sample_data_dir() -> Path:
    """The bundled sample model and preference data (``DPO_TUI_SAMPLE_DATA`` overrides, for installs)."""
    env = os.environ.get("DPO_TUI_SAMPLE_DATA")
    return Path(env) if env else REPO_DIR / "sample_data"


def sample_model_dir() -> Path:
    return sample_data_dir() / "tiny-chat"


def sample_dataset_path() -> Path:
    return sample_data_dir() / "prefs" / "train.jsonl"


def sample_conversational_dataset_path() -> Path:
    return sample_data_dir() / "prefs" / "train_conversational.jsonl"


def sample_heldout_prompts_path() -> Path:
    return sample_data_dir() / "prefs" / "heldout_prompts.txt"


def pairs_root() -> Path:
    """Where the console puts pair-making jobs by default (``dpo-tui pairs list`` looks here)."""
    return data_home() / "pairs"


def sample_heldout_facts_path() -> Path:
    return sample_data_dir() / "prefs" / "heldout_facts.jsonl"


def sample_heldout_pairs_path() -> Path:
    return sample_data_dir() / "prefs" / "heldout_pairs.jsonl"
