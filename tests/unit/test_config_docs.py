"""docs/config.md is generated from RunConfig; it must match what the generator writes today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doc_is_current(gen):
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == gen.render(), (
        "docs/config.md is stale: run `python scripts/gen_config_docs.py`"
    )


def test_every_field_is_documented(gen):
    from dpo_tui.core.config import RunConfig

    text = gen.render()
    for name, info in RunConfig.model_fields.items():
        assert info.description, f"RunConfig.{name} has no docstring"
        assert f"| `{name}` |" in text


def test_check_reports_a_stale_file_and_writes_nothing(gen, tmp_path, capsys):
    stale = tmp_path / "config.md"
    stale.write_text(gen.render().replace("| `beta` |", "| `beta_old` |"), encoding="utf-8")
    before = stale.read_text(encoding="utf-8")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "stale" in err and "beta_old" in err and "2 changed lines" in err
    assert stale.read_text(encoding="utf-8") == before


def test_check_passes_on_a_current_file_and_writing_makes_it_current(gen, tmp_path):
    out = tmp_path / "config.md"
    assert gen.main(["--check", "--output", str(out)]) == 1  # missing counts as stale
    assert gen.main(["--output", str(out)]) == 0
    assert gen.main(["--check", "--output", str(out)]) == 0


def test_help_writes_nothing(gen, tmp_path):
    out = tmp_path / "config.md"
    with pytest.raises(SystemExit) as exit_info:
        gen.main(["--help", "--output", str(out)])
    assert exit_info.value.code == 0
    assert not out.exists()
