"""Pure pieces of the console, tested without a running app: charts, the experiment form, formatters."""

from __future__ import annotations

import math
import random
import shlex
from pathlib import Path

import pytest

from dpo_tui.core.config import SAMPLE_PRESET, RunConfig, build_config
from dpo_tui.ui import chart, form
from dpo_tui.ui.format import duration, human_bytes, human_count, metric, progress_bar


# --- charts ----------------------------------------------------------------------------------------
def naive_means(points, x0, x1, columns):
    step = (x1 - x0) / (columns - 1)
    sums, counts = [0.0] * columns, [0] * columns
    for x, y in points:
        if y is None:
            continue
        col = int((x - x0) / step + 0.5)
        if 0 <= col < columns:
            sums[col] += y
            counts[col] += 1
    return [s / c if c else None for s, c in zip(sums, counts, strict=True)]


@pytest.mark.parametrize("n", [1, 2, 7, 100, 5000])
def test_column_means_match_a_naive_binning(n: int) -> None:
    rng = random.Random(n)
    points = [(float(s), rng.random() if s % 13 else None) for s in range(1, n + 1)]
    summary = chart.Summary.of(points)
    if summary.empty:
        return
    x0, x1 = summary.x_range()
    if x1 == x0:
        return
    got = summary.column_means(x0, x1, 40)
    want = naive_means(points, x0, x1, 40)
    for a, b in zip(got, want, strict=True):
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_summary_follows_appends_and_truncation() -> None:
    points = [(float(s), float(s)) for s in range(1, 50)]
    summary = chart.Summary.of(points)
    points += [(50.0, 50.0), (51.0, 51.0)]
    summary.sync(points)
    assert summary.n == 51 and summary.cum[-1] == sum(range(1, 52))
    # A resumed run drops the steps after its checkpoint and logs them again with new values.
    del points[40:]
    points += [(41.0, -1.0), (42.0, -2.0)]
    summary.sync(points)
    fresh = chart.Summary.of(points)
    assert summary.cum == fresh.cum and summary.xs == fresh.xs and summary.y_min == -2.0


def test_draw_shapes() -> None:
    assert chart.draw([[]], 10, 4) is None
    assert chart.draw([[(1.0, None), (2.0, None)]], 10, 4) is None
    flat = chart.draw([[(float(s), 0.5) for s in range(10)]], 20, 5)
    assert flat is not None
    # A flat line sits mid-chart, on one row, across the whole width.
    rows_with_dots = [r for r in range(5) if any(flat.cells[r])]
    assert len(rows_with_dots) == 1 and all(flat.cells[rows_with_dots[0]])
    rising = chart.draw([[(float(s), float(s)) for s in range(100)]], 20, 5)
    assert rising is not None
    # Rising: the first column is drawn at the bottom, the last at the top.
    assert rising.cells[4][0] and rising.cells[0][19]
    assert rising.row_text(0).strip()


def test_two_series_own_their_cells() -> None:
    canvas = chart.draw([[(0.0, 0.0), (10.0, 0.0)], [(0.0, 1.0), (10.0, 1.0)]], 10, 4)
    assert canvas is not None
    owners = {o for row in canvas.owner for o in row if o >= 0}
    assert owners == {0, 1}


def test_ema_smooths_and_keeps_gaps() -> None:
    smoothed = chart.ema([(1, 1.0), (2, None), (3, 0.0), (4, 0.0)])
    assert smoothed[0] == (1, 1.0) and smoothed[1] == (2, None)
    assert 0.0 < smoothed[3][1] < 1.0


@pytest.mark.parametrize(
    ("value", "label"),
    [(0, "0"), (0.6931, "0.693"), (123.4, "123"), (1e-5, "1.0e-5"), (-2.31, "-2.31"), (-7.0e-5, "-7.0e-5"),
     (-0.00702, "-0.007"), (-123456.0, "-1.2e5"), (-1.5e-300, "-2e-300"), (math.inf, "inf")],
)
def test_axis_label(value: float, label: str) -> None:
    assert chart.axis_label(value) == label
    assert len(label) <= 7  # the y-axis gutter


# --- the experiment form ---------------------------------------------------------------------------
def test_form_covers_every_field_once() -> None:
    names = [n for _, fields in form.SECTIONS for n in fields]
    assert sorted(names) == sorted(RunConfig.model_fields)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("beta", "0.1", "0.1"),
        ("lora_target_modules", "q_proj, v_proj", ["q_proj", "v_proj"]),
        ("probe_prompts", "Hi, there | Bye", ["Hi, there", "Bye"]),
        ("gpus", "0,1", ["0", "1"]),
        ("column_map", "prompt=question, chosen=good", {"prompt": "question", "chosen": "good"}),
        ("model_revision", "", None),
    ],
)
def test_text_to_value(name: str, text: str, value: object) -> None:
    assert form.from_text(form.field_spec(name), text) == value


def test_widget_kinds() -> None:
    assert form.field_spec("gradient_checkpointing").kind == "bool"
    assert form.field_spec("method").choices == ("lora", "qlora", "full")
    assert form.field_spec("loss_type").kind == "choice"
    assert form.field_spec("lora_target_modules").kind == "list"


def test_problems_are_keyed_by_field() -> None:
    config, problems = form.problems_by_field({**SAMPLE_PRESET, "beta": "-1", "lora_rank": "abc"})
    assert config is None
    assert set(problems) == {"beta", "lora_rank"}
    config, problems = form.problems_by_field({**SAMPLE_PRESET, "loss_type": "exo_pair"})
    assert config is None and "" in problems


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"beta": 0.3, "lora_rank": 32, "gradient_checkpointing": True},
        {"lora_target_modules": ["q_proj", "v_proj"], "name": "try-1", "column_map": {"prompt": "question"}},
        {"learning_rate": 1e-5, "max_steps": -1, "num_epochs": 2.0, "precision": "fp32", "gpus": [0]},
    ],
)
def test_command_line_recreates_the_config(changes: dict) -> None:
    """The shown command, parsed by the real CLI, gives back the same RunConfig."""
    from dpo_tui.cli import build_parser
    from dpo_tui.cli.runs_cmd import config_from_args

    config = build_config({**SAMPLE_PRESET, **changes})
    line = form.command_line(config)
    argv = shlex.split(line)
    assert argv[:2] == ["dpo-tui", "train"]
    args = build_parser().parse_args(argv[1:])
    assert config_from_args(args) == config


# --- formatters ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "text"), [(None, "–"), (5, "5s"), (65, "1m05s"), (3700, "1h01m"), (90000, "1d01h")])
def test_duration(seconds, text) -> None:
    assert duration(seconds) == text


def test_small_formatters() -> None:
    assert human_bytes(1536) == "1.5 KiB"
    assert human_count(27_200) == "27.2K" and human_count(1_000_000) == "1M"
    assert metric(None) == "–" and metric(0.5) == "0.500" and metric(1e-6) == "1.00e-06"
    assert progress_bar(0.5, 10) == "█████     " and len(progress_bar(1.0, 7)) == 7


def test_summary_log_does_not_erase_the_last_point() -> None:
    from dpo_tui.core.events import RunHistory

    events = [
        {"type": "log", "step": 1, "metrics": {"loss": 0.69}},
        {"type": "log", "step": 2, "metrics": {"loss": 0.5}},
        {"type": "log", "step": 2, "summary": True, "metrics": {"train_loss": 0.6, "train_runtime": 3.0}},
    ]
    history = RunHistory()
    history.apply(events)  # RunHistory keeps the summary log aside itself
    assert history.series["loss"] == [(1, 0.69), (2, 0.5)]


def test_root_label_abbreviates_home_and_elides_deep_paths(tmp_path, monkeypatch) -> None:
    from dpo_tui.ui.services import Services, root_label

    monkeypatch.setenv("HOME", str(tmp_path))
    mine = Services(runs_root=tmp_path / ".local" / "share" / "dpo-tui" / "runs")
    assert root_label(mine) == "~/.local/share/dpo-tui/runs"
    deep = Services(runs_root=Path("/scratch/pytest-of-root/pytest-182/test_launch_quit_reopen0/home/runs"))
    short = root_label(deep, 30)
    assert len(short) == 30 and short.startswith("/scratch") and short.endswith("home/runs") and "…" in short
    assert root_label(Services(runs_root=Path("/srv/runs")), 30) == "/srv/runs"
