"""docs/keys.md lists every binding of the console, and every binding has an id."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.compare import CompareScreen
from dpo_tui.ui.screens.confirm import ConfirmDialog
from dpo_tui.ui.screens.dataset import DatasetScreen
from dpo_tui.ui.screens.experiment import ExperimentScreen
from dpo_tui.ui.screens.gpu_picker import GpuPickerDialog
from dpo_tui.ui.screens.help import HelpScreen
from dpo_tui.ui.screens.ladder_dialog import LadderDialog
from dpo_tui.ui.screens.models import ModelScreen, ModelTable
from dpo_tui.ui.screens.monitor import MonitorScreen
from dpo_tui.ui.screens.runs import RunsScreen
from dpo_tui.ui.screens.save_dialog import SavePathDialog

KEYS_DOC = Path(__file__).resolve().parents[2] / "docs" / "keys.md"
OWNERS = [DpoTuiApp, ModelScreen, ModelTable, DatasetScreen, ExperimentScreen, RunsScreen, MonitorScreen, CompareScreen, ConfirmDialog, HelpScreen,
          SavePathDialog, LadderDialog, GpuPickerDialog]


@pytest.mark.parametrize("owner", OWNERS, ids=lambda c: c.__name__)
def test_every_binding_has_an_id_and_is_documented(owner: type) -> None:
    text = KEYS_DOC.read_text()
    for binding in owner.BINDINGS:
        assert binding.id, f"{owner.__name__}: {binding.key} has no id"
        assert f"`{binding.id}`" in text, f"{binding.id} is missing from docs/keys.md"


def test_binding_ids_are_unique() -> None:
    ids = [b.id for owner in OWNERS for b in owner.BINDINGS]
    assert len(ids) == len(set(ids))


def test_run_markers_match_core() -> None:
    """The app's cheap first-paint listing agrees with core.runs on what a run folder is."""
    import tempfile

    from dpo_tui.core import runs
    from dpo_tui.ui.app import run_folder_names

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, files in {"a": ["config.json"], "b": ["status.json"], "c": ["events.jsonl"], "d": ["other"], ".e": ["config.json"]}.items():
            (root / name).mkdir()
            for f in files:
                (root / name / f).write_text("{}")
        assert run_folder_names(root) == [p.name for p in runs.list_run_dirs(root)]
