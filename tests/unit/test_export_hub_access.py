"""Pushing to the hub is refused up front when any offline switch is on (pure core, no network)."""

from __future__ import annotations

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.export_plan import check_hub_access
from dpo_tui.core.hub import OFFLINE_VARS


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in {*OFFLINE_VARS["model"], *OFFLINE_VARS["dataset"]}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    return monkeypatch


@pytest.mark.parametrize(("name", "value"), [
    ("DPO_TUI_OFFLINE", "1"),
    ("DPO_TUI_OFFLINE", "true"),
    ("HF_HUB_OFFLINE", "1"),
    ("HF_HUB_OFFLINE", "YES"),
    ("TRANSFORMERS_OFFLINE", "on"),
])
def test_offline_switch_means_cannot_push(online: pytest.MonkeyPatch, name: str, value: str) -> None:
    online.setenv(name, value)
    with pytest.raises(UserError) as err:
        check_hub_access()
    assert f"offline mode is on ({name})" in err.value.summary
    assert f"unset {name}" in (err.value.hint or "")


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_switch_off_pushes_with_the_token(online: pytest.MonkeyPatch, value: str) -> None:
    online.setenv("DPO_TUI_OFFLINE", value)
    assert check_hub_access() == "hf_test"


def test_dataset_only_offline_does_not_block_a_model_push(online: pytest.MonkeyPatch) -> None:
    online.setenv("HF_DATASETS_OFFLINE", "1")
    assert check_hub_access() == "hf_test"
