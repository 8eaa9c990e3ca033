"""The event wire format: writer, offset reader (torn and garbage lines), and the history fold."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dpo_tui.core import events as ev


def test_writer_sanitizes_non_finite_and_numbers_seq(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with ev.EventWriter(path, attempt=1) as w:
        w.emit(ev.STARTED, max_steps=3)
        w.emit(ev.LOG, step=1, metrics={"loss": float("nan"), "rewards/margins": 0.5, "grad_norm": math.inf})
    lines = path.read_text().splitlines()
    assert "NaN" not in lines[1] and "Infinity" not in lines[1]
    log = json.loads(lines[1])
    assert log["metrics"] == {"loss": None, "rewards/margins": 0.5, "grad_norm": None}
    assert log["nonfinite"] == ["loss", "grad_norm"]
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    assert log["v"] == ev.EVENT_VERSION and log["attempt"] == 1


def test_second_writer_continues_seq_and_repairs_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with ev.EventWriter(path) as w:
        w.emit(ev.STARTED)
    with open(path, "a") as fh:
        fh.write('{"v":1,"seq":2,"type":"lo')  # killed mid-write
    with ev.EventWriter(path, attempt=2) as w:
        w.emit(ev.RESUMED, step=0)
    events = ev.read_events(path)
    assert [e["type"] for e in events] == ["started", "resumed"]
    assert events[-1]["seq"] == 2 and events[-1]["attempt"] == 2


@pytest.mark.parametrize(
    ("chunks", "expected_types", "bad"),
    [
        (['{"type":"log","step":1}\n'], ["log"], 0),
        (['{"type":"log","st', 'ep":1}\n'], ["log"], 0),  # torn write completed later
        (['{"type":"log","step":1}\n', "garbage\n", '{"type":"x"}\n'], ["log", "x"], 1),  # unknown types pass through
        (['[1,2]\n', '{"no_type":1}\n'], [], 2),
        (["\n\n"], [], 0),
        (['{"type":"log"}\r\n'], ["log"], 0),
    ],
)
def test_reader_reads_whole_lines_only(tmp_path: Path, chunks: list[str], expected_types: list[str], bad: int) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("")
    reader = ev.EventReader(path)
    got = []
    for chunk in chunks:
        with open(path, "a") as fh:
            fh.write(chunk)
        got += reader.read_new()
    assert [e["type"] for e in got] == expected_types
    assert reader.bad_lines == bad


def test_reader_holds_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"log","step":1}\n{"type":"log","step":2')
    reader = ev.EventReader(path)
    assert [e["step"] for e in reader.read_new()] == [1]
    assert reader.read_new() == []
    with open(path, "a") as fh:
        fh.write("}\n")
    assert [e["step"] for e in reader.read_new()] == [2]


def test_reader_restarts_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"a"}\n{"type":"b"}\n')
    reader = ev.EventReader(path)
    assert len(reader.read_new()) == 2
    path.write_text('{"type":"c"}\n')
    assert [e["type"] for e in reader.read_new()] == ["c"]


def _log(step: int, loss: float | None, attempt: int = 1) -> dict:
    return {"type": "log", "step": step, "t": 100.0 + step, "attempt": attempt, "metrics": {"loss": loss}}


def test_history_drops_superseded_steps_after_resume() -> None:
    history = ev.RunHistory()
    history.apply([{"type": "started", "max_steps": 6, "attempt": 1}, *[_log(s, 1.0 / s) for s in range(1, 6)]])
    # Killed at step 5; the newest checkpoint was step 3. The next attempt re-logs 4..6.
    history.apply([{"type": "resumed", "step": 3}, {"type": "started", "max_steps": 6, "attempt": 2}])
    assert [s for s, _ in history.series["loss"]] == [1, 2, 3]
    history.apply([_log(s, 0.5, attempt=2) for s in (4, 5, 6)])
    assert [s for s, _ in history.series["loss"]] == [1, 2, 3, 4, 5, 6]
    assert history.latest("loss") == 0.5 and history.attempt == 2


def test_history_rate_and_eta() -> None:
    history = ev.RunHistory()
    history.apply([{"type": "started", "max_steps": 100}])
    history.apply([{"type": "log", "step": s, "t": 10.0 + s * 0.5, "metrics": {"loss": 0.6}} for s in range(1, 11)])
    assert history.steps_per_second() == pytest.approx(2.0)
    assert history.eta_seconds() == pytest.approx(45.0)


def test_history_terminal_and_resources() -> None:
    history = ev.RunHistory()
    history.apply([{"type": "resource", "rss": 1}, {"type": "checkpoint", "step": 2}, {"type": "failed", "kind": "nan"}])
    assert history.terminal["kind"] == "nan" and history.last_checkpoint["step"] == 2 and history.last_resource["rss"] == 1


def test_history_keeps_the_summary_event_aside() -> None:
    history = ev.RunHistory()
    history.apply([_log(1, 0.6), _log(2, 0.4),
                   {"type": "log", "step": 2, "summary": True, "metrics": {"train_loss": 0.5, "train_runtime": 3.0}}])
    assert history.latest("loss") == 0.4 and [s for s, _ in history.series["loss"]] == [1, 2]
    assert history.summary == {"train_loss": 0.5, "train_runtime": 3.0}


def _eval_log(step: int, loss: float) -> dict:
    """What the Trainer logs after an evaluation: the eval metrics as an ordinary log at the train step."""
    return {"type": "log", "step": step, "t": 100.5 + step,
            "metrics": {"eval_loss": loss, "eval_rewards/margins": 1.0 - loss, "eval_runtime": 0.2, "epoch": 0.5}}


def test_history_keeps_the_train_points_at_an_eval_step() -> None:
    history = ev.RunHistory()
    history.apply([{"type": "started", "max_steps": 4, "attempt": 1}, _log(1, 0.69), _log(2, 0.6), _eval_log(2, 0.65),
                   {"type": "eval", "step": 2, "metrics": {"eval_loss": 0.65, "eval_rewards/margins": 0.35}},
                   _log(3, 0.5), _log(4, 0.4), _eval_log(4, 0.55)])
    assert history.series["loss"] == [(1, 0.69), (2, 0.6), (3, 0.5), (4, 0.4)]
    assert "eval_loss" not in history.series and "epoch" not in history.eval_series
    # The eval event repeats what the eval log said: one point per eval step.
    assert history.eval_series["eval_loss"] == [(2, 0.65), (4, 0.55)]
    assert [s for s, _ in history.eval_series["eval_rewards/margins"]] == [2, 4]
    assert history.step == 4 and history.latest("loss") == 0.4


def test_history_still_truncates_a_repeated_step_after_an_eval() -> None:
    history = ev.RunHistory()
    history.apply([_log(1, 0.69), _log(2, 0.6), _eval_log(2, 0.65), _log(3, 0.5), _eval_log(3, 0.6)])
    # A resumed attempt re-logs from step 2 (no resumed event: the first attempt was killed mid-write).
    history.apply([_log(2, 0.58, attempt=2)])
    assert history.series["loss"] == [(1, 0.69), (2, 0.58)]
    assert history.eval_series["eval_loss"] == []  # its evaluation at step 2 follows its train log
    history.apply([_eval_log(2, 0.62)])
    assert history.eval_series["eval_loss"] == [(2, 0.62)] and history.series["loss"] == [(1, 0.69), (2, 0.58)]


def _long_log(path: Path, steps: int, resume_at: int) -> None:
    """Attempt 1 logs steps 1..steps, is resumed at ``resume_at`` and logs to ``steps`` again, then ends.

    Written in one go, in the writer's wire format: what is tested is the reader, and thousands of
    fsync'd ``EventWriter.emit`` calls would cost seconds (the writer has its own tests above).
    """
    events: list[dict] = []

    def emit(type_: str, attempt: int, **fields: object) -> None:
        events.append({"v": ev.EVENT_VERSION, "seq": len(events) + 1, "t": 1000.0 + len(events), "attempt": attempt,
                       "type": type_, **fields})

    emit(ev.STARTED, 1, max_steps=steps)
    for step in range(1, steps + 1):
        emit(ev.LOG, 1, step=step, metrics={"loss": 1.0 / step, "rewards/margins": step / 100}, nonfinite=[])
        if step % 1000 == 0:
            emit(ev.CHECKPOINT, 1, step=step, path=f"checkpoint-{step}")
    emit(ev.STARTED, 2, max_steps=steps)
    emit(ev.RESUMED, 2, step=resume_at)
    for step in range(resume_at + 1, steps + 1):
        emit(ev.LOG, 2, step=step, metrics={"loss": 2.0 / step, "rewards/margins": step / 50}, nonfinite=[])
    emit(ev.LOG, 2, step=steps, summary=True, metrics={"train_loss": 0.3}, nonfinite=[])
    emit(ev.FINISHED, 2, step=steps)
    torn = '{"type": "log", "step": 99999, "metr'  # a torn last line: not an event yet
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + torn)


def test_preview_is_a_thinned_but_faithful_fold(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _long_log(path, steps=6000, resume_at=4000)
    full = ev.RunHistory()
    full.apply(ev.read_events(path))
    preview = ev.preview_history(path, max_points=500, tail_logs=50)
    assert full.complete and not preview.complete
    loss = preview.series["loss"]
    assert 400 <= len(loss) <= 700 < len(full.series["loss"]) == 6000
    steps = [s for s, _ in loss]
    assert steps == sorted(set(steps))  # one point per step, in order: the resume superseded attempt 1
    exact = dict(full.series["loss"])
    assert all(value == exact[step] for step, value in loss)  # every sampled point is the true one
    assert loss[-45:] == full.series["loss"][-45:]  # the newest steps are exact
    # Everything that is not a log is folded in full: attempts, checkpoints, the end, the summary.
    assert preview.terminal == full.terminal and preview.attempt == full.attempt == 2
    assert preview.last_checkpoint == full.last_checkpoint and preview.summary == full.summary
    assert preview.step == full.step == 6000 and preview.event_count == full.event_count


def test_preview_of_a_short_log_is_the_full_fold(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _long_log(path, steps=300, resume_at=200)
    with open(path, "a") as fh:
        fh.write("\n\x00garbage\n")
    full = ev.RunHistory()
    full.apply(ev.read_events(path))
    preview = ev.preview_history(path)
    assert preview.complete and preview.series == full.series and preview.terminal == full.terminal
    assert ev.preview_history(tmp_path / "missing.jsonl").event_count == 0
