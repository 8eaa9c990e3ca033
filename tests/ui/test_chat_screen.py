"""The chat screen, driving a fake chat worker (``tests/support/fake_chat_worker.py``, a real subprocess).

The console opens in the chat mode with a run preselected (what ``c`` on a run does); the tests
type prompts, wait for the streamed answers, and check the panes, the conversations, the keys
(greedy, re-ask, reward, judgements) and how a crashed worker is shown and restarted. The fake
speaks the real protocol with canned answers, so these tests need no torch; one test (the
snapshot, marked ``ml``) runs the real worker on the bundled tiny model.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.chat_client import ChatClient
from dpo_tui.core.config import build_config
from dpo_tui.core.runs import Run, RunStatus, create_run
from tests.support.fake_chat_worker import fake_worker_command, write_fake_assets
from tests.support.uikit import make_services, screen_text
from tests.worker.test_chat_support import ChatAssets, build_assets

RUN_ID = "20251126-212000-tiny-chat-b0.1"
SIZE = (120, 36)


@dataclass
class FakeAssets:
    """Model and adapter folders the fake worker accepts (configs only, no weights)."""

    base: Path
    adapter_a: Path
    adapter_b: Path
    adapter_other: Path


@pytest.fixture
def assets(tmp_path: Path) -> FakeAssets:
    f = write_fake_assets(tmp_path / "chat-assets")
    return FakeAssets(f["base"], f["adapter-a"], f["adapter-b"], f["adapter-other"])


@pytest.fixture(scope="session")
def real_assets(tmp_path_factory) -> ChatAssets:
    return build_assets(tmp_path_factory.mktemp("chat-assets"))


def fake_client(**kwargs: Any) -> ChatClient:
    return ChatClient(command=fake_worker_command(), **kwargs)


def make_adapter_run(root: Path, assets: Any, run_id: str = RUN_ID, adapter: Path | None = None,
                     model: Path | None = None, beta: float = 0.1) -> Run:
    """A finished LoRA run folder whose adapter/ is one of the test adapters."""
    run = create_run(root, build_config({"model": str(model or assets.base), "beta": beta}), run_id=run_id)
    shutil.copytree(adapter or assets.adapter_a, run.adapter_dir)
    (run.adapter_dir / "COMPLETE").write_text("")
    run.write_status(RunStatus(state="finished", created_at=0.0, step=30, max_steps=30, exit_code=0))
    return run


def chat_app(root: Path, run_id: str | None = RUN_ID, real_worker: bool = False):
    from dpo_tui.ui.app import DpoTuiApp

    services = make_services(root) if real_worker else make_services(root, chat_client=fake_client)
    app = DpoTuiApp(services, initial_mode="chat")
    app.chat_run_id = run_id
    return app


async def wait_for(pilot: Any, condition, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            screen = pilot.app.screen
            raise AssertionError(f"timed out waiting for {what or condition}: state={getattr(screen, 'state', '?')} "
                                 f"detail={getattr(screen, 'detail', '')}\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def chat_screen(app: Any) -> Any:
    from dpo_tui.ui.screens.chat import ChatScreen

    screen = app.screen
    assert isinstance(screen, ChatScreen), type(screen)
    return screen


async def ready(pilot: Any) -> Any:
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "state", "") == "ready", what="worker ready")
    return chat_screen(pilot.app)


async def ask(pilot: Any, prompt: str) -> Any:
    screen = chat_screen(pilot.app)
    from textual.widgets import Input

    box = screen.query_one("#chat-input", Input)
    box.focus()
    box.value = prompt
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.session.turn is not None and screen.session.turn.done, what="the reply")
    await pilot.pause(0.2)
    return screen


async def test_two_panes_stream_one_reply_each(ui_root, assets):
    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    messages: list[Any] = []
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        screen = await ready(pilot)
        panes = screen.panes
        assert [p.border_title for p in panes] == [f"base · {Path(screen.base_path).name}", f"{RUN_ID} · β 0.1"]
        assert screen._client.command == fake_worker_command()
        assert screen.model_info["chat_template"] == "model"
        await ask(pilot, "What is the capital of Kenya?")
        turn = screen.session.turn
        assert turn.done and not turn.failed and sorted(turn.sides) == [0, 1]
        for i, pane in enumerate(panes):
            assert pane.answer_text == turn.sides[i]["text"], "what streamed is the whole answer"
            assert screen.session.histories[i][0] == {"role": "user", "content": "What is the capital of Kenya?"}
            assert screen.session.histories[i][1]["role"] == "assistant"
        assert screen.gen_mode == "batched"
        text = screen_text(app)
        assert "› What is the capital of Kenya?" in text and "tok" in text
        batches = [m for m in messages if type(m).__name__ == "WorkerEvents"]
        tokens = [e for m in batches for e in m.events if e["type"] == P.TOKEN]
        assert tokens, "tokens are streamed, not only the final answer"
        # a second prompt continues each side's own conversation
        await ask(pilot, "And of Chile?")
        assert [len(h) for h in screen.session.histories] == [4, 4]


async def test_greedy_reask_reward_and_judgement(ui_root, assets):
    from tests.support.cli import run_cli

    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert screen.session.settings.greedy, "a first look is greedy"
        await ask(pilot, "What is the capital of Kenya?")
        first = [screen.session.turn.sides[i]["text"] for i in (0, 1)]
        seed = screen.session.settings.seed
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.session.turn.done, what="the re-asked reply")
        await pilot.pause(0.2)
        assert screen.session.settings.seed == seed + 1
        assert [screen.session.turn.sides[i]["text"] for i in (0, 1)] == first, "greedy ignores the seed"
        assert [len(h) for h in screen.session.histories] == [2, 2], "re-ask replaces the last answer"
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: len(screen.session.turn.rewards) == 2, what="the rewards")
        await pilot.pause(0.1)
        rewards = screen.session.turn.rewards
        assert rewards[1]["reward"] > rewards[0]["reward"], "the tuned answer has the higher implicit reward"
        assert "reward" in screen_text(app)
        assert first[0] != first[1] and all(t.strip() for t in first)
        await pilot.press("f8")  # right (tuned) is better
        path = P.judgements_path(ui_root, str(assets.base))
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        assert rows == [{"prompt": "What is the capital of Kenya?\n", "chosen": first[1].strip(), "rejected": first[0].strip()}]
        await pilot.press("f7")  # already judged: ignored
        assert len(path.read_text().splitlines()) == 1
    proc = run_cli("data", "check", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_multi_turn_judgement_is_conversational(ui_root, assets):
    from tests.support.cli import run_cli

    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.session.settings.greedy = True
        await ask(pilot, "What is the capital of Kenya?")
        await ask(pilot, "Are you sure?")
        texts = [screen.session.turn.sides[i]["text"].strip() for i in (0, 1)]
        assert texts[0] != texts[1] and all(texts)
        await pilot.press("f7")
    path = P.judgements_path(ui_root, str(assets.base), conversational=True)
    row = json.loads(path.read_text())
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
    assert row["chosen"] == [{"role": "assistant", "content": texts[0]}]
    proc = run_cli("data", "check", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_crash_is_shown_and_restart_recovers(ui_root, assets):
    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        old_pid = screen._client.pid
        screen._client.kill()
        await wait_for(pilot, lambda: screen.state == "crashed", what="the crash")
        assert "signal 9" in screen.detail
        assert "crashed" in screen_text(app)
        await pilot.press("f9")
        screen = await ready(pilot)
        assert screen._client.pid != old_pid
        await ask(pilot, "Hello")
        assert sorted(screen.session.turn.sides) == [0, 1]


async def test_adapter_for_another_base_is_refused_with_a_message(ui_root, assets):
    make_adapter_run(ui_root, assets, adapter=assets.adapter_other)  # config says base, adapter is for "other"
    app = chat_app(ui_root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "different base" in screen_text(pilot.app) or "another model" in screen_text(pilot.app)
                       or "differs" in screen_text(pilot.app), what="the mismatch message")
        screen = chat_screen(app)
        assert screen.state in ("ready", "busy")  # the base still chats


async def test_open_chat_from_another_mode_preselects_the_run(ui_root, assets):
    """What 'c' on a run in the Runs or Monitor screen does: ``app.open_chat(run_id)``."""
    from dpo_tui.ui.app import DpoTuiApp

    make_adapter_run(ui_root, assets)
    other = make_adapter_run(ui_root, assets, run_id="20251126-222000-tiny-chat-b0.5", adapter=assets.adapter_b, beta=0.5)
    app = DpoTuiApp(make_services(ui_root, chat_client=fake_client), initial_mode="runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        app.open_chat(other.id)
        screen = await ready(pilot)
        assert [a.label for a in screen.tuned] == [other.id]
        assert screen.tuned[0].beta == 0.5
        await ask(pilot, "Hello")
        assert sorted(screen.session.turn.sides) == [0, 1]
        app.open_chat(RUN_ID)  # another run: the same worker swaps the adapter
        await wait_for(pilot, lambda: [a.label for a in screen.tuned] == [RUN_ID] and screen.state == "ready"
                       and screen.session.loaded.keys() == {screen.tuned[0].adapter_name}, what="the adapter swap")
        assert screen.session.histories == [[], []]


async def test_no_run_means_an_empty_chat_with_a_hint(ui_root):
    ui_root.mkdir(parents=True, exist_ok=True)
    app = chat_app(ui_root, run_id=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        screen = chat_screen(app)
        assert screen.base_path is None and screen._client is None
        assert "Ctrl+O" in screen_text(app)


@pytest.mark.ml
def test_chat_screen_snapshot(ui_root, real_assets, snap_compare):
    """The one chat UI test on the real torch worker: the screen as the tiny model answers."""
    if not real_assets.real_sample:
        pytest.skip("the snapshot shows sample_data/tiny-chat's answers; build it with `make sample`")
    make_adapter_run(ui_root, real_assets, adapter=real_assets.adapter_zero)  # deterministic: the base's own greedy answer
    app = chat_app(ui_root, real_worker=True)

    async def run_before(pilot: Any) -> None:
        screen = await ready(pilot)
        await wait_for(pilot, lambda: app.gpu_inventory is not None, what="the header")
        screen.show_timings = False
        screen.session.settings.greedy = True
        screen._refresh_lines()
        await ask(pilot, "What is the capital of Kenya?")
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- the operator's tour at 80×24 ----------------------------------------------------------------------
SMALL = (80, 24)


async def test_sides_dialog_fits_80x24_enter_opens_and_panes_name_the_difference(ui_root, assets):
    from textual.widgets import Button, SelectionList

    from dpo_tui.ui.screens.chat_dialogs import ChatSidesDialog

    make_adapter_run(ui_root, assets)
    for i in range(8):  # enough adapters to overflow the list
        make_adapter_run(ui_root, assets, run_id=f"20251126-22{i}000-tiny-chat-b0.5", adapter=assets.adapter_b, beta=0.5)
    app = chat_app(ui_root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatSidesDialog), what="the sides dialog")
        await pilot.pause(0.2)
        dialog = app.screen
        for button in dialog.query(Button):
            region = button.region
            assert region.height > 0 and region.bottom <= SMALL[1], f"{button.id} is cut off: {region}"
        assert "Enter opens" in screen_text(app)
        listing = dialog.query_one(SelectionList)
        first_beta = [c.beta for c in dialog.choices]
        assert listing.highlighted == 0 and len(dialog.choices) == 9
        other = next(i for i, b in enumerate(first_beta) if b == 0.5)
        await pilot.press(*(["down"] * other), "space")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen and len(screen.tuned) == 2, what="two tuned sides")
        await ready(pilot)
        titles = [p.border_title for p in screen.panes]
        assert titles[1].startswith("β=0.1 · ") and titles[2].startswith("β=0.5 · "), titles


async def test_first_look_is_greedy_and_the_hints_say_how_context_works(ui_root, assets):
    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        text = screen_text(app)
        assert "Greedy: sides differ only by their training" in text and "Ctrl+G samples" in text
        await ask(pilot, "What is the capital of Kenya?")
        answers = [screen.session.turn.sides[i]["text"] for i in (0, 1)]
        assert answers[0] != answers[1], "the first answer shows what training changed"
        text = screen_text(app)
        assert "Follow-ups keep each side's conversation" in text and "Ctrl+N starts fresh" in text
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert "Greedy:" in screen_text(app)


async def test_escape_leaves_the_prompt_box_and_global_keys_work_after(ui_root, assets):
    from textual.widgets import Input

    from dpo_tui.ui.screens.help import HelpScreen

    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        box = screen.query_one("#chat-input", Input)
        assert app.focused is box
        await wait_for(pilot, lambda: "f1 Keys" in screen_text(app).splitlines()[-1], what="F1 in the footer")
        assert "esc Leave" in screen_text(app).splitlines()[-1]
        assert not any(k == "question_mark" for k in app.screen.active_bindings if
                       app.screen.active_bindings[k].binding.show), "? is text in the box, never offered as a key"
        await pilot.press("question_mark", "2")
        assert box.value == "?2" and not isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.focused is not box
        assert "Outside the prompt" in screen_text(app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the keys list")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="back to chat")
        await pilot.press("enter")
        assert app.focused is box


async def test_judgements_pass_the_data_lint_and_a_system_prompt_makes_them_conversational(ui_root, assets):
    from dpo_tui.core.data import check_data

    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        await ask(pilot, "What is the capital of Kenya?")
        await pilot.press("f8")
        screen.session.settings.system_prompt = "Be brief."
        await pilot.press("ctrl+n")
        await ask(pilot, "And of Chile?")
        await pilot.press("f7")
    standard = check_data(str(P.judgements_path(ui_root, str(assets.base))))
    assert standard.ok and standard.format == "standard" and standard.rows_usable == 1
    assert not standard.findings, [f.code for f in standard.findings]
    conversational = check_data(str(P.judgements_path(ui_root, str(assets.base), conversational=True)))
    assert conversational.ok and conversational.format == "conversational" and conversational.rows_usable == 1
    assert not conversational.findings, [f.code for f in conversational.findings]


async def test_release_frees_the_worker_and_asking_loads_it_again(ui_root, assets):
    from dpo_tui.ui.screens.chat_resident import release_chat, resident_chat

    make_adapter_run(ui_root, assets)
    app = chat_app(ui_root)
    async with app.run_test(size=SMALL) as pilot:
        screen = await ready(pilot)
        resident = resident_chat(app)
        assert resident is not None and resident.ram_mib == 300 and resident.gpu_mib is None
        assert "300 MiB" in resident.describe()
        await wait_for(pilot, lambda: "f10 Release" in screen_text(app), what="the release key in the footer")
        proc = screen.client
        await pilot.press("f10")
        await wait_for(pilot, lambda: screen.client is None and not proc.alive(), what="the release")
        assert resident_chat(app) is None and screen.state == "off"
        assert "released" in screen_text(app)
        assert not release_chat(app), "nothing left to release"
        await ask(pilot, "Hello")
        assert sorted(screen.session.turn.sides) == [0, 1] and resident_chat(app) is not None
        assert release_chat(app) and screen.client is None
