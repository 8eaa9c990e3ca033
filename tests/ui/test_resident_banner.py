"""The banner on the runs and experiment screens while Chat keeps its model loaded, and F10 there
releasing it. Driven by events from the chat screen (no polling): the fake chat worker
(``tests/support/fake_chat_worker.py``) loads, the runs screen shows the banner, F10 releases."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens import chat_resident
from dpo_tui.ui.screens.chat_resident import ResidentChat
from dpo_tui.ui.screens.runs import RunsScreen
from dpo_tui.ui.widgets.resident_banner import ResidentBanner, banner_text, resident_changed
from tests.support.fake_chat_worker import write_fake_assets
from tests.support.snap import settle
from tests.support.uikit import make_services
from tests.ui.test_chat_screen import FakeAssets, fake_client, make_adapter_run, ready, wait_for
from tests.ui.test_snapshots import on_experiment


def test_banner_text() -> None:
    assert banner_text(None) == ""
    assert banner_text(ResidentChat("tiny-chat", 390, None)) == "Chat model still loaded (tiny-chat, ~390 MiB) — F10 releases it"
    assert banner_text(ResidentChat("Qwen2.5-0.5B", 900, 1210)) == "Chat model still loaded (Qwen2.5-0.5B, GPU ~1210 MiB) — F10 releases it"


async def test_runs_screen_banner_follows_the_chat_worker_and_f10_releases(ui_root: Path, tmp_path: Path) -> None:
    f = write_fake_assets(tmp_path / "chat-assets")
    run = make_adapter_run(ui_root, FakeAssets(f["base"], f["adapter-a"], f["adapter-b"], f["adapter-other"]))
    app = DpoTuiApp(make_services(ui_root, chat_client=fake_client), initial_mode="chat")
    app.chat_run_id = run.id
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await ready(pilot)
        await app.switch_mode("runs")
        # not settle(): the chat pump worker runs for as long as the chat worker does
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.listed, what="the runs screen")
        banner = app.screen.query_one("#runs-resident", ResidentBanner)
        await wait_for(pilot, lambda: banner.display, what="the banner")
        assert str(banner.render()).startswith(f"Chat model still loaded ({Path(f['base']).name}")
        # Changes on the chat side reach the banner of a screen in another mode as they happen.
        chat.release_worker()
        await wait_for(pilot, lambda: not banner.display, what="the banner to go on a release in Chat")
        chat._start_worker()
        await wait_for(pilot, lambda: banner.display, what="the banner back when the worker loads again")
        await pilot.press("f10")
        await wait_for(pilot, lambda: not banner.display, what="the banner to go")
        assert chat.client is None and chat_resident.resident_chat(app) is None


class FakeResident:
    """Stands in for the chat screen: a loaded worker with fixed memory figures (a deterministic snapshot)."""

    def __init__(self) -> None:
        self.loaded = True

    def resident(self) -> ResidentChat | None:
        return ResidentChat("tiny-chat", 390, None) if self.loaded else None

    def release_worker(self) -> bool:
        was, self.loaded = self.loaded, False
        return was


@pytest.mark.usefixtures("fake_sample")
def test_experiment_banner_snapshot(snap_compare, ui_root: Path) -> None:
    async def run_before(pilot) -> None:
        await on_experiment(pilot)
        chat_resident.register(pilot.app, FakeResident())
        resident_changed(pilot.app)
        banner = pilot.app.screen.query_one("#experiment-resident", ResidentBanner)
        await settle(pilot, lambda: banner.display)

    assert snap_compare(DpoTuiApp(make_services(ui_root)), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.usefixtures("fake_sample")
async def test_experiment_f10_releases(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(80, 24)) as pilot:
        await on_experiment(pilot)
        fake = FakeResident()
        chat_resident.register(app, fake)
        resident_changed(app)
        banner = app.screen.query_one("#experiment-resident", ResidentBanner)
        await settle(pilot, lambda: banner.display)
        value = app.screen.query_one("#f-beta").value
        await pilot.press("f10")  # a field has focus: F10 still releases, and types nothing
        await settle(pilot, lambda: not banner.display)
        assert not fake.loaded and app.screen.query_one("#f-beta").value == value
