"""The experiment screen's GPU picker: free memory and other users' processes per GPU, picked by keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.core.config import RunConfig
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.gpu_choice import device_note
from dpo_tui.ui.screens.gpu_picker import GpuPickerDialog, others_text, picked_summary
from dpo_tui.ui.widgets.vram_bar import VramBar
from tests.support.uikit import GIB, fake_inventory, make_services, screen_text, to_experiment, until

pytestmark = pytest.mark.usefixtures("fake_sample")

SHARED = {1: [("bob", 4242, 12.0)]}


def test_rows_name_other_users_and_skip_mine() -> None:
    inv = fake_inventory(2, {0: [("me", 10, 1.0)], 1: [("bob", 4242, 12.0), ("carol", 77, 3.5)]})
    assert others_text(inv.gpus[0], user="me") == "—"
    assert others_text(inv.gpus[1], user="me") == "bob pid 4242 12.0G, carol pid 77 3.5G"
    assert picked_summary(inv, [0, 1], 1, "zero2") == "GPU 0,1: 2 processes (zero2), 55.5 GiB free on the fullest"
    assert picked_summary(inv, [], 2, "ddp") == "nothing picked: the run takes the first 2 GPUs (ddp)"


def test_device_note_warns_about_shared_missing_and_too_few_gpus() -> None:
    inv = fake_inventory(2, SHARED)
    assert device_note(inv, RunConfig(gpus=[0]), user="me") == ""
    assert device_note(inv, RunConfig(gpus=[1]), user="me") == "GPU1 also used by bob (12.0 GiB)  · ctrl+o picks other GPUs"
    assert device_note(inv, RunConfig(gpus=[3]), user="me") == "GPU 3 is not usable here (GPUs 0,1; ctrl+o picks)"
    assert device_note(inv, RunConfig(nproc=4), user="me") == "nproc 4 but 2 GPUs are usable here"
    assert device_note(fake_inventory(0), RunConfig(nproc=2), user="me") == ""  # CPU: gloo processes


async def test_pick_gpus_by_keys_updates_the_config_and_the_vram_bar(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root, gpu_inventory=lambda: fake_inventory(2, SHARED)))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        await until(pilot, lambda: app.gpu_inventory is not None and exp.estimate is not None)
        bar = exp.query_one(VramBar)
        assert bar.device_label == "GPU0" and bar.free_bytes == 71 * GIB and bar.note == ""

        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        text = screen_text(app)
        assert "bob pid 4242 12.0G" in text and "59.0/80.0G" in text and "71.0/80.0G" in text
        await pilot.press("down", "space", "enter")  # GPU 1, the one bob is using
        await until(pilot, lambda: app.screen is exp)
        assert exp.values["gpus"] == [1] and exp.config is not None and exp.config.gpus == [1] and exp.config.nproc == 1
        assert bar.device_label == "GPU1" and bar.free_bytes == 59 * GIB
        assert "GPU1 also used by bob (12.0 GiB)" in bar.note
        assert "--gpus 1" in str(exp.query_one("#command-line").render())

        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        assert app.screen.picked == [1]  # the dialog opens on the current choice
        await pilot.press("a", "enter")  # every idle GPU: only GPU 0
        await until(pilot, lambda: app.screen is exp)
        assert exp.config.gpus == [0] and bar.note == ""

        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        await pilot.press("down", "space", "escape")  # cancelled: nothing changes
        await until(pilot, lambda: app.screen is exp)
        assert exp.config.gpus == [0]

        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        await pilot.press("down", "space", "enter")  # GPU 0 and 1: one process each
        await until(pilot, lambda: app.screen is exp)
        assert exp.config.gpus == [0, 1] and exp.config.nproc == 2
        assert bar.device_label == "GPU0,GPU1" and bar.free_bytes == 59 * GIB  # every process needs room


async def test_cpu_only_machine_explains_instead_of_listing(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root, gpu_inventory=lambda: fake_inventory(0)))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        await until(pilot, lambda: app.gpu_inventory is not None)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        await pilot.pause(0.2)
        text = " ".join(screen_text(app).replace("█", " ").split())
        assert "No GPU is visible (no NVIDIA GPU found)" in text and "over gloo" in text
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is exp)
        assert exp.config is not None and exp.config.gpus == [] and exp.config.nproc == 1


def test_header_reads_the_real_inventory_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The header and the VRAM bar read ``core.gpus.GpuInfo`` as NVML fills it (memory_free/memory_total)."""
    from dpo_tui.ui.widgets.header import gpu_summary

    assert gpu_summary(fake_inventory(1)) == "GPU0 71.0/80.0G free"
    assert gpu_summary(fake_inventory(2, SHARED)) == "G0 71/80G G1 59/80G"
    assert gpu_summary(fake_inventory(5)) == "5 GPUs 355/400G free"
    assert gpu_summary(fake_inventory(0)) == "CPU only · RAM 100/128G free"
    assert gpu_summary(None) == "GPUs: …"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the header counts what the console may use
    assert gpu_summary(fake_inventory(2, SHARED)) == "GPU1 59.0/80.0G free"


@pytest.mark.parametrize(("gpus", "forms"), [
    (0, ["CPU only · RAM 100/128G free", "RAM 100/128G free", "RAM 100G free"]),
    (1, ["GPU0 71.0/80.0G free", "GPU0 71/80G free", "GPU0 71G free"]),
    (2, ["G0 71/80G G1 59/80G", "2 GPUs 130/160G free", "2 GPUs 130G free"]),
])
def test_header_memory_gets_shorter_by_words_not_cut(gpus: int, forms: list[str]) -> None:
    from dpo_tui.ui.widgets.header import gpu_summary

    inventory = fake_inventory(gpus, SHARED) if gpus == 2 else fake_inventory(gpus)
    assert [gpu_summary(inventory, level) for level in (0, 1, 2)] == forms


async def test_header_at_80_columns_shows_a_whole_memory_figure(ui_root: Path) -> None:
    """With a long host name at 80 columns the header drops words from the memory figure instead of
    cutting it ("RAM 19/24G fre…")."""
    from dpo_tui.ui.widgets.header import StatusHeader

    app = DpoTuiApp(make_services(ui_root, host_label="gpu-box-with-a-long-name", gpu_inventory=lambda: fake_inventory(0)))
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.screen.query_one(StatusHeader)
        await until(pilot, lambda: header.inventory is not None)
        line = str(header.render())
        assert "…" not in line, line
        assert line.rstrip().endswith("G free"), line


async def test_gpus_hidden_by_cuda_visible_devices_are_not_offered(ui_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Numbering is NVML's everywhere; CUDA_VISIBLE_DEVICES=1 leaves only GPU 1, and a typo'd field never crashes."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    inv = fake_inventory(2, SHARED)
    assert [g.index for g in inv.visible()] == [1]
    assert device_note(inv, RunConfig(gpus=[0]), user="me") == "GPU 0 is not usable here (GPUs 1; ctrl+o picks)"
    app = DpoTuiApp(make_services(ui_root, gpu_inventory=lambda: inv))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        await until(pilot, lambda: app.gpu_inventory is not None and exp.estimate is not None)
        assert exp.query_one(VramBar).device_label == "GPU1"  # the first usable GPU, not GPU 0
        exp.apply_changes({"gpus": ["0"], "nproc": "2.5"})  # a GPU that is hidden, and a typo
        await pilot.pause()
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, GpuPickerDialog))
        text = screen_text(app)
        assert "GPU 0 hidden by CUDA_VISIBLE_DEVICES" in text and "59.0/80.0G" in text and "71.0/80.0G" not in text
        assert app.screen.picked == []  # the hidden GPU typed in the form is not kept
        await pilot.press("space", "enter")
        await until(pilot, lambda: app.screen is exp)
        assert exp.config is not None and exp.config.gpus == [1] and exp.config.nproc == 1
