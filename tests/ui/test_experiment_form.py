"""The experiment form: lora alpha follows rank until the operator sets it, an invalid field blanks the VRAM figure."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.widgets.vram_bar import VramBar
from tests.support.uikit import make_services, to_experiment, until

pytestmark = pytest.mark.usefixtures("fake_sample")


async def type_into(pilot, widget, text: str) -> None:
    """Set the text as typing would (one Input.Changed per prefix); no key presses, whose meaning while a
    field has focus is another screen-wide question."""
    widget.focus()
    for end in range(len(text) + 1):
        widget.value = text[:end]
        await pilot.pause()


async def test_alpha_follows_rank_until_edited(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        exp = await to_experiment(pilot, app)
        rank, alpha = exp.query_one("#f-lora_rank"), exp.query_one("#f-lora_alpha")
        assert int(exp.values["lora_alpha"]) == 2 * int(exp.values["lora_rank"])
        await type_into(pilot, rank, "32")
        await until(pilot, lambda: str(exp.values["lora_rank"]) == "32")
        assert str(exp.values["lora_alpha"]) == "64" and alpha.value == "64"
        await type_into(pilot, alpha, "10")
        await until(pilot, lambda: str(exp.values["lora_alpha"]) == "10")
        await type_into(pilot, rank, "4")
        await until(pilot, lambda: str(exp.values["lora_rank"]) == "4")
        assert str(exp.values["lora_alpha"]) == "10" and alpha.value == "10", "the operator's alpha stays"


async def test_invalid_rank_blanks_the_vram_figure(ui_root: Path) -> None:
    pytest.importorskip("dpo_tui.core.vram")
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        exp = await to_experiment(pilot, app)
        await until(pilot, lambda: exp.estimate is not None)
        bar = exp.query_one(VramBar)
        await type_into(pilot, exp.query_one("#f-lora_rank"), "0")
        await until(pilot, lambda: "lora_rank" in exp.problems)
        assert exp.estimate is None and bar.estimate is None
        assert bar.error == "— (fix lora rank first)"
        await type_into(pilot, exp.query_one("#f-lora_rank"), "8")
        await until(pilot, lambda: exp.estimate is not None and bar.error is None)


async def test_a_rank_at_the_hidden_size_is_warned_under_the_vram_bar(ui_root: Path) -> None:
    """The console says what ``dpo-tui train`` warns: a LoRA rank at or above the hidden size gains nothing."""
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        exp = await to_experiment(pilot, app)
        await until(pilot, lambda: app.setup.model_info is not None)
        hidden = app.setup.model_info.hidden_size
        bar = exp.query_one(VramBar)
        assert "hidden size" not in bar.note
        await type_into(pilot, exp.query_one("#f-lora_rank"), str(hidden))
        await until(pilot, lambda: f"≥ hidden size {hidden}" in bar.note)
        await type_into(pilot, exp.query_one("#f-lora_rank"), "8")
        await until(pilot, lambda: "hidden size" not in bar.note)
