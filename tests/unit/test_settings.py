"""Settings: defaults, round trip, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.settings import Settings, load_settings, save_settings


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "nope.toml")
    assert s == Settings()
    assert s.theme == "textual-dark"
    assert s.model_roots == [] and s.keymap == {}


def test_default_path_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "conf" / "settings.toml"
    monkeypatch.setenv("DPO_TUI_SETTINGS", str(path))
    saved = save_settings(Settings(model_roots=["~/models"], theme="nord"))
    assert saved == path and path.is_file()
    loaded = load_settings()
    assert loaded.model_roots == ["~/models"] and loaded.theme == "nord"
    assert loaded.model_root_paths()[0] == Path("~/models").expanduser()


def test_round_trip(tmp_path: Path) -> None:
    s = Settings(model_roots=["/a", "/b"], keymap={"quit": "ctrl+q"}, theme="gruvbox")
    path = save_settings(s, tmp_path / "s.toml")
    assert load_settings(path) == s
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_every_field_is_documented() -> None:
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no docstring"


def test_bad_toml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('theme = "nord"\nmodel_roots = ["/a",\nkeymap = 3\n')
    with pytest.raises(UserError) as err:
        load_settings(path)
    problem = err.value.problems[0]
    assert problem.file == str(path)
    assert problem.line is not None and problem.line >= 2
    assert "TOML" in err.value.render()


def test_unknown_key_and_bad_type(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('theme = "nord"\nthemes = "x"\nmodel_roots = "not-a-list"\n')
    with pytest.raises(UserError) as err:
        load_settings(path)
    fields = {p.field: p for p in err.value.problems}
    assert "themes" in fields and fields["themes"].line == 2
    assert "model_roots" in fields and fields["model_roots"].line == 3


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"theme = '\xff'\n")
    with pytest.raises(UserError, match="settings"):
        load_settings(path)
