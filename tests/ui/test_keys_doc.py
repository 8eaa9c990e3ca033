"""docs/keys.md lists every binding of the console, and every binding has an id."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from textual.app import App
from textual.dom import DOMNode

import dpo_tui.ui.screens
import dpo_tui.ui.widgets
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.base import RowTable

KEYS_DOC = Path(__file__).resolve().parents[2] / "docs" / "keys.md"
NAVIGATION = {RowTable}
"""Classes whose bindings are standard navigation (Home/End in a list): no id, documented by key."""


def binding_owners() -> list[type]:
    """The app, and every screen, dialog and widget class of the console that declares its own
    BINDINGS, found by walking ``dpo_tui.ui.screens`` and ``dpo_tui.ui.widgets``."""
    owners: dict[str, type] = {"DpoTuiApp": DpoTuiApp}
    for package in (dpo_tui.ui.screens, dpo_tui.ui.widgets):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if (issubclass(cls, (DOMNode, App)) and cls.__module__.startswith("dpo_tui.ui.")
                        and cls.__dict__.get("BINDINGS")):
                    owners[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return sorted(owners.values(), key=lambda c: c.__name__)


OWNERS = binding_owners()


def test_discovery_finds_every_screen_and_dialog() -> None:
    names = {c.__name__ for c in OWNERS}
    assert {"ModelScreen", "ModelTable", "DatasetScreen", "ExperimentScreen", "RunsScreen", "MonitorScreen",
            "CompareScreen", "ChatScreen", "HelpScreen", "SavePathDialog", "ConfirmDialog"} <= names, names
    assert len([n for n in names if n.endswith("Dialog")]) >= 5, names


@pytest.mark.parametrize("owner", OWNERS, ids=lambda c: c.__name__)
def test_every_binding_has_an_id_and_is_documented(owner: type) -> None:
    text = KEYS_DOC.read_text()
    for binding in owner.BINDINGS:
        if owner in NAVIGATION:
            assert f"`{binding.key}`" in text, f"{owner.__name__}: {binding.key} is missing from docs/keys.md"
            continue
        assert binding.id, f"{owner.__name__}: {binding.key} has no id"
        assert f"`{binding.id}`" in text, f"{binding.id} is missing from docs/keys.md"


def test_binding_ids_are_unique() -> None:
    ids = [b.id for owner in OWNERS for b in owner.BINDINGS if b.id]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


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
