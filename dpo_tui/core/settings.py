"""Operator settings: extra model folders, key bindings, theme. One small TOML file.

The file lives at :func:`dpo_tui.core.paths.settings_path` (``$DPO_TUI_SETTINGS``, else
``~/.config/dpo-tui/settings.toml``). A missing file means defaults; a file that cannot be read
or does not validate raises a :class:`~dpo_tui.core.errors.UserError` that names the file and,
where TOML says so, the line. Saving is atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import paths
from .errors import Problem, UserError
from .fsutil import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Settings(BaseModel):
    """What an operator sets once per machine (not per run)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)

    model_roots: list[str] = Field(default_factory=list)
    """Extra folders scanned for models (one or two levels deep), besides the Hugging Face cache. ``~`` is expanded."""
    keymap: dict[str, str] = Field(default_factory=dict)
    """Key overrides: binding id → keys, e.g. ``{ "app.quit" = "ctrl+q" }`` (ids are listed in docs/keys.md). Unlisted bindings keep their default keys."""
    theme: str = "textual-dark"
    """Textual theme name (``textual-dark``, ``textual-light``, ``nord``, ``gruvbox``, …)."""

    @field_validator("model_roots")
    @classmethod
    def _roots(cls, value: list[str]) -> list[str]:
        return [v.strip() for v in value if v.strip()]

    @field_validator("theme")
    @classmethod
    def _theme(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a theme name is required (e.g. 'textual-dark')")
        return value

    def model_root_paths(self) -> list[Path]:
        """The extra model roots as expanded paths (missing folders included: the scanner skips them)."""
        return [Path(r).expanduser() for r in self.model_roots]


_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the settings file; a missing file gives the defaults."""
    path = Path(path).expanduser() if path is not None else paths.settings_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except IsADirectoryError:
        raise UserError(f"Settings path {path} is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"Cannot read settings file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError("Invalid settings file:", [Problem(f"not UTF-8 (byte {exc.start})", file=str(path))]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = _TOML_POS.search(msg)
        line = int(match.group(1)) if match else getattr(exc, "lineno", None)
        if line is None and "end of document" in msg:
            line = max(1, raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1))
        msg = _TOML_POS.sub("", msg).replace("(at end of document)", "at end of file").strip()
        raise UserError(
            "Invalid settings file:",
            [Problem(f"invalid TOML: {msg}", file=str(path), line=line)],
            hint="fix the line, or delete the file to go back to the defaults",
        ) from None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or None
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = f"unknown setting (known: {', '.join(Settings.model_fields)})"
            problems.append(Problem(msg, field=loc, file=str(path), line=_line_of_key(raw, loc)))
        raise UserError("Invalid settings file:", problems) from None


def _line_of_key(raw: bytes, loc: str | None) -> int | None:
    """Best-effort line number of a top-level key (TOML validation errors carry no positions)."""
    if not loc:
        return None
    key = loc.split(".")[0]
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def save_settings(settings: Settings, path: str | Path | None = None) -> Path:
    """Write the settings atomically (creating the folder); returns the path written."""
    import tomli_w  # small; only needed when saving

    path = Path(path).expanduser() if path is not None else paths.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = settings.model_dump(mode="json")
    data = {k: v for k, v in data.items() if v is not None}
    atomic_write_text(path, tomli_w.dumps(data))
    return path
