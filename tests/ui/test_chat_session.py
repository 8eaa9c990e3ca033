"""The chat session's state without any widget: conversations per side, turns, requests, judgements."""

from __future__ import annotations

from pathlib import Path

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.chat_client import AdapterChoice
from dpo_tui.ui.chat_session import ChatSession, merge_event
from dpo_tui.ui.chat_text import settings_line, title_line

TUNED = [AdapterChoice(label="run-a", path=Path("/runs/a/adapter"), beta=0.2)]


def done(rid: str, side: int, text: str, finish: str = "eos") -> dict:
    return {"type": P.SIDE_DONE, "id": rid, "side": side, "text": text, "finish_reason": finish}


def answered(session: ChatSession, prompt: str = "Hi", texts: tuple[str, str] = ("base says", "tuned says")) -> None:
    sides = session.start_turn("g1", prompt, TUNED)
    assert [s["adapter"] for s in sides] == [P.BASE, "run-a"]
    for i, text in enumerate(texts):
        assert session.side_done(done("g1", i, text))
    session.turn.done = True


def test_a_turn_extends_each_sides_own_conversation():
    session = ChatSession()
    session.reset(2)
    answered(session)
    assert session.histories[0] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "base says"}]
    assert session.histories[1][-1] == {"role": "assistant", "content": "tuned says"}
    sides = session.start_turn("g2", "More", TUNED)
    assert [m["content"] for m in sides[1]["messages"]] == ["Hi", "tuned says", "More"]
    sides[1]["messages"].append({"role": "user", "content": "x"})
    assert len(session.histories[1]) == 3, "the request holds copies"
    assert not session.side_done(done("other", 0, "late")), "events of another request are ignored"


def test_cancelled_and_failed_sides_drop_their_open_prompt():
    session = ChatSession()
    session.reset(2)
    session.start_turn("g1", "Hi", TUNED)
    session.side_done(done("g1", 0, "", finish="cancelled"))
    assert session.histories[0] == []
    assert session.fail_turn() == [1]
    assert session.histories == [[], []] and session.turn.failed and not session.busy


def test_reask_removes_the_last_exchange_and_takes_a_new_seed():
    session = ChatSession()
    session.reset(2)
    answered(session)
    seed = session.settings.seed
    assert session.prepare_reask() == "Hi"
    assert session.histories == [[], []] and session.settings.seed == seed + 1


def test_pending_requests_end_with_their_terminal_event():
    session = ChatSession()
    session.track("a1", "load_adapter", "data")
    assert session.answer({"type": P.WARNING, "id": "a1"}) == ("load_adapter", "data")
    assert session.answer({"type": P.ERROR, "id": "a1"}) == ("load_adapter", "data")
    assert session.answer({"type": P.ERROR, "id": "a1"}) == ("", None)
    session.track("m1", "load_model")
    session.loaded["run-a"] = "/x"
    session.worker_restarted()
    assert session.pending == {} and session.loaded == {}


def test_rewards_score_each_side_with_a_loaded_adapter():
    session = ChatSession()
    session.reset(2)
    answered(session)
    assert session.reward_items(TUNED) == ([], []), "the adapter is not loaded yet"
    session.loaded["run-a"] = "/runs/a/adapter"
    items, where = session.reward_items(TUNED)
    assert [i["ref"] for i in items] == [{"request": "g1", "side": 0}, {"request": "g1", "side": 1}]
    assert {i["adapter"] for i in items} == {"run-a"} and items[0]["beta"] == 0.2
    assert [side for side, _ in where] == [0, 1]


def test_judgement_rows_and_files(tmp_path):
    session = ChatSession()
    session.reset(2)
    answered(session)
    assert session.can_judge()
    j = session.judgement(1, tmp_path, "sample")
    assert j.row == {"prompt": "Hi\n", "chosen": "tuned says", "rejected": "base says"}
    assert j.path == P.judgements_path(tmp_path, "sample")
    session.judged()
    assert not session.can_judge() and session.judged_rows == 1
    session.start_turn("g2", "Again", TUNED)
    for i in (0, 1):
        session.side_done(done("g2", i, "same"))
    session.turn.done = True
    assert session.judgement(0, tmp_path, "sample") is None, "identical answers teach nothing"


def test_token_events_merge_per_side():
    batch: list[dict] = []
    for side, text in ((0, "a"), (0, "b"), (1, "c"), (0, "d")):
        merge_event(batch, {"type": P.TOKEN, "id": "g1", "side": side, "text": text, "n": 1})
    assert [(e["side"], e["text"]) for e in batch] == [(0, "ab"), (1, "c"), (0, "d")]


def test_status_lines():
    session = ChatSession()
    assert str(settings_line(session)) == " greedy · seed 0 · max 256 tokens · reward off"
    session.settings.greedy = False
    assert str(settings_line(session)) == " sampling T 0.7 top-p 0.95 · seed 0 · max 256 tokens · reward off"
    assert str(title_line(None, "", {}, 0, "off", "", "", "")) == " Chat · pick a run with Ctrl+O"
    title = title_line("/m/tiny", "sample", {"device": "cpu", "dtype": "float32"}, 1, "ready", "", "batched", "RAM 1 MiB")
    assert str(title) == " base tiny-chat · cpu float32 · 1 tuned · worker ready · batched · RAM 1 MiB"


def test_save_judgement_appends_a_row_the_data_lint_accepts(tmp_path):
    from dpo_tui.core.data import check_data
    from dpo_tui.ui.chat_judgements import save_judgement

    session = ChatSession()
    session.reset(2)
    assert save_judgement(session, 0, tmp_path, "sample") is None, "nothing to judge yet"
    answered(session)
    outcome = save_judgement(session, 1, tmp_path, "sample")
    assert outcome is not None and outcome.path == P.judgements_path(tmp_path, "sample")
    assert outcome.severity == "information" and "right chosen" in outcome.message
    assert save_judgement(session, 0, tmp_path, "sample") is None, "a turn is judged once"
    report = check_data(str(outcome.path))
    assert report.ok and report.rows_usable == 1 and not report.findings
    (tmp_path / "blocked").write_text("")  # a file where the judgements folder should be
    session.start_turn("g2", "Again", TUNED)
    for i, text in ((0, "one"), (1, "two")):
        session.side_done(done("g2", i, text))
    session.turn.done = True
    failed = save_judgement(session, 0, tmp_path / "blocked", "sample")
    assert failed is not None and failed.severity == "error" and failed.path is None
